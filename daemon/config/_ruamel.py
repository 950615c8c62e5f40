"""The ruamel.yaml loader: YAML to plain data, keeping the line and column of every node.

ruamel.yaml composes the document into nodes that carry their marks; this module builds
plain dicts, lists and scalars from them and records, for each key path, where its key and
its value start. Only the YAML 1.2 core schema is constructed (no arbitrary tags), and a key
given twice in one mapping is an error, not a silent overwrite. Composition is metered by
:class:`~daemon.config.limits.NodeBudget`: a file nested too deep or whose aliases expand to
too many nodes is refused while it is read, before anything is built from it.

It is pure Python and slow (about 1.5 ms for a small venue file); :mod:`daemon.config._yaml`
reads with libyaml and comes here only for a file it refuses, so that every message, and
every position in it, is this module's.
"""

from __future__ import annotations

import math
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.composer import Composer
from ruamel.yaml.error import MarkedYAMLError, YAMLError
from ruamel.yaml.events import AliasEvent
from ruamel.yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from daemon.config._located import KeyPath, Located, Position, YamlError
from daemon.config.limits import DEFAULT_LIMITS, LimitExceeded, NodeBudget, YamlLimits

__all__ = ["parse_yaml_ruamel"]

_STR = "tag:yaml.org,2002:str"
_MERGE = "tag:yaml.org,2002:merge"
_NULL = "tag:yaml.org,2002:null"
_BOOL = "tag:yaml.org,2002:bool"
_INT = "tag:yaml.org,2002:int"
_SEQ = "tag:yaml.org,2002:seq"
_MAP = "tag:yaml.org,2002:map"
_CORE = "tag:yaml.org,2002:"
_TIMESTAMP = "tag:yaml.org,2002:timestamp"
_NO_TAGS = "config files use plain YAML values; remove the tag"


class _Marked(Located):
    """Positions kept as the parser's marks for every key path."""

    __slots__ = ("_keys", "_values")

    def __init__(self, data: Any, values: dict[KeyPath, Any], keys: dict[KeyPath, Any]
                 ) -> None:
        super().__init__(data)
        self._values = values
        self._keys = keys

    def value_position(self, path: KeyPath) -> Position | None:
        mark = self._values.get(path)
        return Position(mark.line + 1, mark.column + 1) if mark is not None else None

    def key_position(self, path: KeyPath) -> Position | None:
        mark = self._keys.get(path)
        return Position(mark.line + 1, mark.column + 1) if mark is not None else None


def _pos(node: Node) -> Position:
    mark = node.start_mark
    return Position(mark.line + 1, mark.column + 1)


class _Builder:
    def __init__(self, yaml: YAML) -> None:
        self._constructor = yaml.constructor
        self.values: dict[KeyPath, Any] = {}
        self.keys: dict[KeyPath, Any] = {}

    def scalar(self, node: ScalarNode) -> Any:
        tag: str = node.tag or ""
        if tag == _STR:
            return node.value
        if tag == _NULL:
            return None
        if tag == _BOOL:
            return node.value.lower() == "true"
        if tag == _INT and node.value.isdigit() and not node.value.startswith("0"):
            return int(node.value)
        if tag == _TIMESTAMP:
            return node.value  # dates stay text: YAML 1.2's core schema has no timestamps
        if not tag.startswith(_CORE):
            raise YamlError(f"unsupported tag {tag!r}", _pos(node), _NO_TAGS)
        try:
            value = self._constructor.construct_object(node, deep=True)
        except (YAMLError, ValueError) as exc:
            # ruamel raises ValueError for an explicitly tagged value it cannot convert
            # (``!!int abc``).
            problem = getattr(exc, "problem", None) or "cannot read this value"
            raise YamlError(f"invalid value: {problem}", _pos(node)) from None
        if isinstance(value, float) and not math.isfinite(value):
            raise YamlError("not a finite number", _pos(node), "use a plain number")
        if isinstance(value, bytes):
            raise YamlError("binary values are not supported", _pos(node), _NO_TAGS)
        return value

    def build(self, node: Node, path: KeyPath) -> Any:
        self.values[path] = node.start_mark
        if isinstance(node, ScalarNode):
            return self.scalar(node)
        if node.tag not in (_SEQ, _MAP):
            raise YamlError(f"unsupported tag {node.tag!r}", _pos(node), _NO_TAGS)
        if isinstance(node, SequenceNode):
            return [self.build(item, (*path, i)) for i, item in enumerate(node.value)]
        if isinstance(node, MappingNode):
            out: dict[str, Any] = {}
            for key_node, value_node in node.value:
                if key_node.tag == _MERGE:
                    raise YamlError("merge keys (<<) are not supported", _pos(key_node),
                                    "write the keys out in full")
                if not isinstance(key_node, ScalarNode):
                    raise YamlError("a mapping key must be a plain value", _pos(key_node))
                raw = self.scalar(key_node)
                if raw is None or not isinstance(raw, str | int | bool):
                    raise YamlError("a mapping key must be text", _pos(key_node))
                key = raw if isinstance(raw, str) else str(raw)
                if key in out:
                    raise YamlError(f"duplicate key {key!r}", _pos(key_node),
                                    "each key may appear once in a mapping")
                child = (*path, key)
                self.keys[child] = key_node.start_mark
                out[key] = self.build(value_node, child)
            return out
        raise YamlError(f"unsupported node {type(node).__name__}", _pos(node))


class _MeteredComposer(Composer):
    """ruamel's composer, reporting every node and alias to a :class:`NodeBudget`."""

    budget: NodeBudget

    def compose_node(self, parent: Any, index: Any) -> Any:
        event = self.parser.peek_event()
        mark = event.start_mark
        if isinstance(event, AliasEvent):
            target = self.anchors.get(event.anchor)
            if target is not None:
                self.budget.alias(target, mark.line + 1, mark.column + 1)
            return super().compose_node(parent, index)
        self.budget.enter(mark.line + 1, mark.column + 1)
        node = super().compose_node(parent, index)
        if isinstance(node, MappingNode):
            children: list[object] = [part for pair in node.value for part in pair]
        elif isinstance(node, SequenceNode):
            children = list(node.value)
        else:
            children = []
        self.budget.leave(node, children)
        return node


def parse_yaml_ruamel(text: str, limits: YamlLimits = DEFAULT_LIMITS) -> Located:
    """One YAML document as :class:`Located` data; :class:`YamlError` on bad syntax or a
    document over ``limits``."""
    yaml = YAML(typ="safe", pure=True)
    yaml.Composer = _MeteredComposer
    yaml.composer.budget = NodeBudget(limits)
    try:
        node = yaml.compose(text)
    except LimitExceeded as exc:
        raise YamlError(exc.message, Position(exc.line, exc.column), exc.hint) from None
    except MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        position = Position(mark.line + 1, mark.column + 1) if mark else Position(1, 1)
        problem = exc.problem or exc.context or "invalid YAML"
        raise YamlError(f"invalid YAML: {problem}", position,
                        "check the indentation, quoting and brackets here and just above"
                        ) from None
    except YAMLError as exc:
        raise YamlError(f"invalid YAML: {exc}", Position(1, 1)) from None
    if node is None:
        return Located(None)
    builder = _Builder(yaml)
    data = builder.build(node, ())
    return _Marked(data, builder.values, builder.keys)
