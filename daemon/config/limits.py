"""Caps on what one config file may cost to read: bytes, nesting depth, expanded nodes.

A YAML file is small on disk but can be large in memory: aliases repeat whole subtrees
(nine aliases of nine aliases of ... expand to hundreds of millions of nodes from a few hundred
bytes), and deep nesting exhausts the stack of a recursive composer. Every YAML loader syncd
uses drives a :class:`NodeBudget` while it composes, node by node, and checks the file size
with :func:`check_size` before parsing, so that the caps and their messages live here and
nowhere else.
"""

from __future__ import annotations

from dataclasses import dataclass

from daemon.errors import SyncdError

__all__ = ["DEFAULT_LIMITS", "LimitExceeded", "NodeBudget", "YamlLimits", "check_size"]


@dataclass(frozen=True, slots=True)
class YamlLimits:
    """The caps on one config file (settings ``SYNCD_CONFIG_MAX_*``)."""

    #: Largest file, in bytes.
    max_file_bytes: int = 1_048_576
    #: Deepest nesting of mappings and lists.
    max_depth: int = 64
    #: Most nodes once every alias is expanded (each key, value and item counts once).
    max_nodes: int = 100_000


DEFAULT_LIMITS = YamlLimits()


class LimitExceeded(SyncdError, ValueError):
    """A file is over one of the caps. ``line`` and ``column`` are 1-based."""

    def __init__(self, message: str, line: int, column: int, hint: str) -> None:
        super().__init__(message)
        self.message = message
        self.line = line
        self.column = column
        self.hint = hint


def check_size(size: int, limits: YamlLimits) -> None:
    """:class:`LimitExceeded` when a file of ``size`` bytes is too large to read."""
    if size > limits.max_file_bytes:
        raise LimitExceeded(
            f"the file is larger than {limits.max_file_bytes} bytes", 1, 1,
            "split it, or raise SYNCD_CONFIG_MAX_FILE_BYTES")


class NodeBudget:
    """Counts depth and expanded nodes while a document is composed.

    The loader calls :meth:`enter` when it starts a node and :meth:`leave` when it has
    finished one, and :meth:`alias` for each alias with the expanded size of the node it
    refers to (:meth:`size_of` after that node was finished). Positions are 1-based.
    """

    def __init__(self, limits: YamlLimits) -> None:
        self.limits = limits
        self.depth = 0
        self.nodes = 0
        self._sizes: dict[int, int] = {}

    def enter(self, line: int, column: int) -> None:
        self.depth += 1
        if self.depth > self.limits.max_depth:
            raise LimitExceeded(
                f"nested more than {self.limits.max_depth} levels deep", line, column,
                "flatten this structure, or raise SYNCD_CONFIG_MAX_DEPTH")
        self._count(1, line, column)

    def leave(self, node: object, children: list[object]) -> None:
        """``node`` is finished; its expanded size is itself plus its children's."""
        self.depth -= 1
        self._sizes[id(node)] = 1 + sum(self._sizes.get(id(c), 1) for c in children)

    def size_of(self, node: object) -> int | None:
        """The expanded size of a finished node; None while it is still being composed."""
        return self._sizes.get(id(node))

    def alias(self, node: object, line: int, column: int) -> None:
        size = self.size_of(node)
        if size is None:
            raise LimitExceeded("an alias refers to a node that contains it", line, column,
                                "an alias may only repeat a value defined before it")
        self._count(size, line, column)

    def _count(self, n: int, line: int, column: int) -> None:
        self.nodes += n
        if self.nodes > self.limits.max_nodes:
            raise LimitExceeded(
                f"more than {self.limits.max_nodes} values once aliases are expanded",
                line, column, "repeat less through aliases (&name / *name), or raise "
                "SYNCD_CONFIG_MAX_NODES")
