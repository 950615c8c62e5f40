"""Named SQL queries kept in ``.sql`` files beside this module.

A file holds queries introduced by a ``-- name: <identifier>`` line; the text up to the next
such line is the query. Values are always bound as ``$n`` parameters, never spliced in.
"""

from __future__ import annotations

import re
from functools import cache
from importlib import resources

from daemon.errors import SyncdError

__all__ = ["QueryParseError", "parse_queries", "queries"]

_NAME = re.compile(r"^--\s*name:\s*(?P<name>[A-Za-z_][A-Za-z0-9_]*)\s*$")


class QueryParseError(SyncdError, ValueError):
    """A ``.sql`` file of named queries is malformed."""


def parse_queries(text: str, *, source: str = "<string>") -> dict[str, str]:
    """Split ``text`` into ``{name: sql}``. Text before the first name line must be comments."""
    result: dict[str, str] = {}
    name: str | None = None
    lines: list[str] = []

    def flush(lineno: int) -> None:
        if name is None:
            return
        body = "\n".join(lines).strip()
        if not body:
            raise QueryParseError(f"{source}:{lineno}: query {name!r} is empty")
        result[name] = body

    for lineno, line in enumerate(text.splitlines(), start=1):
        match = _NAME.match(line)
        if match:
            flush(lineno)
            name = match["name"]
            if name in result:
                raise QueryParseError(f"{source}:{lineno}: query {name!r} is defined twice")
            lines = []
        elif name is None:
            if line.strip() and not line.lstrip().startswith("--"):
                raise QueryParseError(f"{source}:{lineno}: SQL before the first '-- name:' line")
        else:
            lines.append(line)
    flush(len(text.splitlines()) + 1)
    return result


@cache
def queries(filename: str) -> dict[str, str]:
    """The named queries of ``daemon/sql/<filename>``, parsed once."""
    text = resources.files(__package__).joinpath(filename).read_text(encoding="utf-8")
    return parse_queries(text, source=filename)
