"""Turning pydantic validation errors into located :class:`ConfigProblem` values."""

from __future__ import annotations

import types
from typing import Annotated, Any, Union, get_args, get_origin

from pydantic import BaseModel, ValidationError

from daemon.config._located import KeyPath, Located
from daemon.config.problems import ConfigProblem, format_path

__all__ = ["keys_at", "problems_from_validation"]

_HINTS: dict[str, str] = {
    "uuid_parsing": "a UUID such as 6f1c2a9e-0b7d-4c1e-9a55-3f2d8b7c1a01 (python -c "
                    "'import uuid; print(uuid.uuid4())')",
    "uuid_type": "a UUID such as 6f1c2a9e-0b7d-4c1e-9a55-3f2d8b7c1a01",
    "bad_cron": "five fields: minute hour day-of-month month day-of-week, e.g. '*/15 * * * *'",
    "bad_timezone": "an IANA time zone such as Europe/London or America/New_York",
    "literal_secret": "never put a secret in YAML: use env:NAME (an environment variable) "
                      "or file:PATH (e.g. a mounted secret), or oauth",
    "bad_env_ref": "e.g. env:SQUARE_WEBHOOK_KEY",
    "credentials_form": "write 'credentials: oauth' or a map such as {api_key: env:NAME}",
    "bad_name": "e.g. comedy-club-square",
    "bool_parsing": "true or false",
    "bool_type": "true or false",
    "string_type": "quote the value",
    "dict_type": "a mapping of key: value lines",
    "list_type": "a list of '- ' items",
    "model_type": "a mapping of key: value lines",
    "literal_error": "use one of the values listed",
    "enum": "use one of the values listed",
    "int_parsing": "a whole number",
    "int_type": "a whole number",
    "float_parsing": "a number",
    "string_too_short": "it must not be empty",
    "string_too_long": "shorten it",
    "string_pattern_mismatch": "see docs/config-reference.md for the accepted form",
    "missing": "add it",
    "extra_forbidden": "remove it, or check its spelling and indentation",
    "empty_mappings": "map at least one entity: product, customer, transaction or inventory",
}


def _unwrap(tp: Any) -> Any:
    while True:
        origin = get_origin(tp)
        if origin is Annotated:
            tp = get_args(tp)[0]
        elif origin is Union or origin is types.UnionType:
            arms = [a for a in get_args(tp) if a is not type(None)]
            tp = arms[0] if arms else tp
            if len(arms) <= 1:
                continue
            models = [a for a in arms if isinstance(a, type) and issubclass(a, BaseModel)]
            tp = models[0] if models else arms[0]
        else:
            return tp


def keys_at(model: type[BaseModel], path: KeyPath) -> list[str] | None:
    """The keys a mapping at ``path`` inside ``model`` accepts (None when free-form)."""
    tp: Any = model
    for part in path:
        tp = _unwrap(tp)
        origin = get_origin(tp)
        if isinstance(tp, type) and issubclass(tp, BaseModel):
            found = next((f for n, f in tp.model_fields.items()
                          if (f.alias or n) == part), None)
            if found is None:
                return None
            tp = found.annotation
        elif origin is dict:
            tp = get_args(tp)[1]
        elif origin in (list, tuple):
            tp = get_args(tp)[0]
        else:
            return None
    tp = _unwrap(tp)
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return [f.alias or n for n, f in tp.model_fields.items()]
    return None


def _data_path(data: Any, loc: tuple[Any, ...]) -> KeyPath:
    out: list[str | int] = []
    node = data
    for i, part in enumerate(loc):
        if part == "[key]":
            out.append(part)
            continue
        if isinstance(node, dict) and str(part) in node:
            node = node[str(part)]
            out.append(str(part))
        elif isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
            node = node[part]
            out.append(part)
        elif i == len(loc) - 1:
            out.append(part if isinstance(part, int) else str(part))
        # else: a union member or validator name pydantic puts in the location
    return tuple(out)


def problems_from_validation(
    exc: ValidationError, located: Located, file: str, model: type[BaseModel],
    *, prefix: KeyPath = (), root: Any = None,
) -> list[ConfigProblem]:
    """One located problem per pydantic error (``prefix`` places a nested model's errors)."""
    problems: list[ConfigProblem] = []
    seen: set[tuple[KeyPath, str]] = set()
    data = located.data if root is None else root
    for err in exc.errors(include_url=False):
        kind = err["type"]
        if kind == "none_required":
            continue  # the other arm of an optional value explains the problem better
        path = (*prefix, *_data_path(data, tuple(err["loc"])))
        hint = _HINTS.get(kind, "")
        message = str(err["msg"]).removeprefix("Value error, ")
        if path and path[-1] == "[key]":
            path = path[:-1]
            pos = located.position(path, key=True)
            message = f"invalid key {str(path[-1])!r}: {message}"
        elif kind == "extra_forbidden":
            pos = located.position(path, key=True)
            message = f"unknown key {str(path[-1])!r}"
            valid = keys_at(model, path[len(prefix):-1])
            if valid:
                hint = "valid keys here: " + ", ".join(valid)
        elif kind == "missing":
            pos = located.position(path[:-1])
            message = f"missing required key {str(path[-1])!r}"
        else:
            pos = located.position(path)
        if (path, message) in seen:
            continue
        seen.add((path, message))
        problems.append(ConfigProblem(file, pos.line, pos.column, format_path(path),
                                      message, hint))
    return problems
