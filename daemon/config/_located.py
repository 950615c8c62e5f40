"""A YAML document as plain data that can say where each of its keys and values starts."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from daemon.errors import SyncdError

__all__ = ["KeyPath", "Located", "Position", "YamlError"]

KeyPath = tuple[str | int, ...]


@dataclass(frozen=True, slots=True)
class Position:
    """1-based line and column."""

    line: int
    column: int


class Located:
    """A document as plain data with the position of its keys and values.

    Each loader finds positions its own way (subclasses); most documents are valid and never
    need one. This base knows no positions (an empty document).
    """

    __slots__ = ("data",)

    def __init__(self, data: Any) -> None:
        self.data = data

    def value_position(self, path: KeyPath) -> Position | None:
        """Where the value at ``path`` starts."""
        return None

    def key_position(self, path: KeyPath) -> Position | None:
        """Where the key of the mapping entry at ``path`` starts (None for list items)."""
        return None

    def position(self, path: KeyPath, *, key: bool = False) -> Position:
        """The closest known position for ``path`` (walking up to the root)."""
        probe = path
        while True:
            found = (self.key_position(probe) if key else None) or self.value_position(probe)
            if found is not None:
                return found
            if not probe:
                return Position(1, 1)
            probe = probe[:-1]


class YamlError(SyncdError, ValueError):
    """The text is not YAML syntax syncd accepts; carries its position."""

    def __init__(self, message: str, position: Position, hint: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.position = position
        self.hint = hint
