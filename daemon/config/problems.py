"""Config problems: each names a file, a line and column, a key path, and a hint."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from daemon.config._located import KeyPath
from daemon.errors import SyncdError

__all__ = ["ConfigInvalid", "ConfigProblem", "format_path"]


def format_path(path: KeyPath) -> str:
    """``integrations[0].schedules.product.cron`` for a key path."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + part
    return out


@dataclass(frozen=True, slots=True)
class ConfigProblem:
    """One thing wrong with the config. Messages never contain credential values."""

    file: str
    line: int
    column: int
    key: str
    message: str
    hint: str = ""

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}:{self.column}"
        key = f" {self.key}:" if self.key else ""
        hint = f" (hint: {self.hint})" if self.hint else ""
        return f"{where}:{key} {self.message}{hint}"

    def as_dict(self) -> dict[str, Any]:
        return {"file": self.file, "line": self.line, "column": self.column, "key": self.key,
                "message": self.message, "hint": self.hint}


class ConfigInvalid(SyncdError):
    """The config has problems; nothing may be applied."""

    def __init__(self, problems: Sequence[ConfigProblem]) -> None:
        self.problems = list(problems)
        first = str(self.problems[0]) if self.problems else "invalid config"
        more = f" (and {len(self.problems) - 1} more)" if len(self.problems) > 1 else ""
        super().__init__(first + more)
