"""YAML to plain data with libyaml, positions found on demand.

libyaml (PyYAML's C parser) composes a document into nodes that carry their marks, about
thirty times faster than the pure-Python ruamel.yaml loader. Plain data is built from those
nodes the way :mod:`daemon.config._ruamel` builds it: the YAML 1.2 core schema (plain scalars
resolved by ruamel.yaml's own 1.2 resolver, so ``yes`` stays text and ``0o17`` is 15), no
tags beyond it, a key given twice is an error. Positions are not recorded while building:
:class:`Located` keeps the node tree and walks it when a problem needs a position.

Building counts depth and expanded nodes against the caps of :mod:`daemon.config.limits`.
A document libyaml refuses, one over a cap, or one this module refuses for any other reason
is read again by the ruamel loader, which reports it: every message and position about bad
YAML stays exactly what it was, while valid files, nearly all of them, never pay for it.
"""

from __future__ import annotations

import math
import re
from typing import Any

import yaml
from ruamel.yaml import YAML as RuamelYAML
from ruamel.yaml import nodes as ruamel_nodes
from ruamel.yaml.error import YAMLError as RuamelYAMLError
from yaml._yaml import CParser
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from daemon.config._located import KeyPath, Located, Position, YamlError
from daemon.config._ruamel import parse_yaml_ruamel
from daemon.config.limits import DEFAULT_LIMITS, YamlLimits
from daemon.errors import SyncdError

__all__ = ["KeyPath", "Located", "Position", "YamlError", "parse_yaml", "parse_yaml_ruamel"]

_PLAIN = "?plain"
_STR = "tag:yaml.org,2002:str"
_NULL = "tag:yaml.org,2002:null"
_BOOL = "tag:yaml.org,2002:bool"
_INT = "tag:yaml.org,2002:int"
_FLOAT = "tag:yaml.org,2002:float"
_SEQ = "tag:yaml.org,2002:seq"
_MAP = "tag:yaml.org,2002:map"
_TIMESTAMP = "tag:yaml.org,2002:timestamp"
_DIRECTIVE = re.compile(r"^%", re.MULTILINE)


class _Refused(SyncdError):
    """This module does not build the document; the ruamel loader reports why."""


class _Loader(CParser):
    """libyaml's composer, leaving plain scalars unresolved (``?plain``) for :func:`_scalar`.

    PyYAML resolves with YAML 1.1 rules (``yes`` is true, ``010`` is 8); config files are
    YAML 1.2, so resolution is done here with ruamel.yaml's 1.2 resolver. Only the parser
    is built (no constructor or resolver state): composing is all this module asks of it.
    """

    def resolve(self, kind: Any, value: Any, implicit: Any) -> str:
        if kind is ScalarNode:
            return _PLAIN if implicit[0] else _STR
        return _SEQ if kind is SequenceNode else _MAP

    def descend_resolver(self, parent: Any, index: Any) -> None:
        """No path resolvers."""

    def ascend_resolver(self) -> None:
        """No path resolvers."""


def _compose(text: str) -> Node | None:
    loader = _Loader(text)
    try:
        node: Node | None = loader.get_single_node()
        return node
    finally:
        loader.dispose()


class _Ruamel:
    """ruamel.yaml's 1.2 resolver and safe constructor, for the rare values that need them."""

    def __init__(self) -> None:
        loader = RuamelYAML(typ="safe", pure=True)
        self.constructor = loader.constructor
        # ruamel's implicit resolvers for YAML 1.2, by the first character they can match
        # (what its resolver's resolve() walks for a plain scalar, without its overhead).
        table = loader.resolver.versioned_resolver
        # Its patterns are compiled lazily behind a proxy; compiled here once instead.
        self.table: dict[str, list[tuple[str, re.Pattern[str]]]] = {
            first: [(str(tag), re.compile(regexp.pattern, regexp.flags))
                    for tag, regexp in rules]
            for first, rules in table.items() if first is not None}

    def resolve(self, value: str) -> str:
        for tag, regexp in self.table.get(value[:1], ()):
            if regexp.match(value):
                return tag
        return _STR

    def construct(self, tag: str, value: str) -> Any:
        try:
            return self.constructor.construct_object(
                ruamel_nodes.ScalarNode(tag, value), deep=True)
        except (RuamelYAMLError, ValueError):
            raise _Refused from None
        finally:
            self.constructor.constructed_objects.clear()


_ruamel: _Ruamel | None = None


def _core() -> _Ruamel:
    global _ruamel  # noqa: PLW0603 - built once, on first use
    if _ruamel is None:
        _ruamel = _Ruamel()
    return _ruamel


def _scalar(node: ScalarNode) -> Any:
    tag: str = node.tag
    value: str = node.value
    if tag == _PLAIN:
        tag = _core().resolve(value)
    if tag == _STR:
        return value
    if tag == _NULL:
        return None
    if tag == _BOOL:
        return value.lower() == "true"
    if tag == _INT and value.isdigit() and not value.startswith("0"):
        return int(value)
    if tag == _TIMESTAMP:
        return value  # dates stay text: YAML 1.2's core schema has no timestamps
    if tag not in (_INT, _FLOAT):
        raise _Refused  # another tag: the ruamel loader says which
    out = _core().construct(tag, value)
    if isinstance(out, float) and not math.isfinite(out):
        raise _Refused  # not a finite number
    return out


class _Builder:
    def __init__(self, limits: YamlLimits) -> None:
        self.max_depth = limits.max_depth
        self.max_nodes = limits.max_nodes
        self.nodes = 0
        # First characters of plain scalars that may be something other than text.
        self.special = _core().table.keys()

    def build(self, node: Node, depth: int) -> Any:
        """Plain data for ``node``; ``depth`` counts ``node`` itself, as the ruamel loader's
        budget does (a scalar inside four lists is five levels deep)."""
        self.nodes += 1
        if self.nodes > self.max_nodes or depth > self.max_depth:
            raise _Refused
        if isinstance(node, ScalarNode):
            return self.scalar(node)
        if node.tag not in (_SEQ, _MAP):
            raise _Refused
        if isinstance(node, SequenceNode):
            return [self.build(item, depth + 1) for item in node.value]
        out: dict[str, Any] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, ScalarNode):
                raise _Refused
            self.nodes += 1
            raw = self.scalar(key_node)  # the merge key << resolves to a tag _scalar refuses
            if raw is None or isinstance(raw, float):
                raise _Refused  # a key must be text (or a whole number or boolean, as text)
            key = raw if isinstance(raw, str) else str(raw)
            if key in out:
                raise _Refused  # a duplicate key
            out[key] = self.build(value_node, depth + 1)
        return out

    def scalar(self, node: ScalarNode) -> Any:
        # Most scalars are text: quoted, or plain and starting with a letter no YAML 1.2
        # resolver matches. Only the others go through the resolver.
        tag = node.tag
        if tag == _STR or (tag == _PLAIN and node.value[:1] not in self.special):
            return node.value
        return _scalar(node)


def _key_text(node: Node) -> str | None:
    try:
        raw = _scalar(node) if isinstance(node, ScalarNode) else None
    except _Refused:
        return None
    return None if raw is None else raw if isinstance(raw, str) else str(raw)


class _Nodes(Located):
    """Positions found by walking libyaml's node tree along a key path."""

    __slots__ = ("_root",)

    def __init__(self, data: Any, root: Node) -> None:
        super().__init__(data)
        self._root = root

    def _find(self, path: KeyPath) -> tuple[Node | None, Node]:
        """(key node or None, value node) at ``path``; LookupError when absent."""
        key: Node | None = None
        node = self._root
        for part in path:
            if isinstance(node, MappingNode) and isinstance(part, str):
                for key_node, value_node in node.value:
                    if _key_text(key_node) == part:
                        key, node = key_node, value_node
                        break
                else:
                    raise LookupError(part)
            elif isinstance(node, SequenceNode) and isinstance(part, int) and \
                    0 <= part < len(node.value):
                key, node = None, node.value[part]
            else:
                raise LookupError(part)
        return key, node

    def value_position(self, path: KeyPath) -> Position | None:
        try:
            _, node = self._find(path)
        except LookupError:
            return None
        return Position(node.start_mark.line + 1, node.start_mark.column + 1)

    def key_position(self, path: KeyPath) -> Position | None:
        try:
            key, _ = self._find(path)
        except LookupError:
            return None
        if key is None:
            return None
        return Position(key.start_mark.line + 1, key.start_mark.column + 1)


def parse_yaml(text: str, limits: YamlLimits = DEFAULT_LIMITS) -> Located:
    """One YAML document as :class:`Located` data; :class:`YamlError` on bad syntax or a
    document over ``limits`` (located exactly as :func:`parse_yaml_ruamel` locates it)."""
    if _DIRECTIVE.search(text) is None:  # a %YAML directive may change the rules: ruamel
        try:
            root = _compose(text)
            if root is None:
                return Located(None)
            return _Nodes(_Builder(limits).build(root, 1), root)
        except (yaml.YAMLError, _Refused, RecursionError):
            pass
    return parse_yaml_ruamel(text, limits)
