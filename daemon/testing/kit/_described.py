"""An emulator checked against its provider's published description: it must refuse
requests the description refuses, made with hypothesis from the description itself."""

from __future__ import annotations

import json
import string
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import httpx
from hypothesis import strategies as st

from daemon.testing.emulator import Emulator
from daemon.testing.openapi import Description, InvalidRequest, Operation, invalid_requests

__all__ = ["check_refused", "described_operations", "encode_form", "invalid_request_strategy",
           "names_field"]

#: Whether a response refuses an invalid request as the provider does.
Refusal = Callable[[int, Any, InvalidRequest], bool]


def described_operations(emulator: Emulator, description: Description) -> list[Operation]:
    """The operations of ``description`` that ``emulator`` serves (its :meth:`routes`)."""
    found: dict[tuple[str, str], Operation] = {}
    for route in emulator.routes():
        method, path = getattr(route, "method", ""), getattr(route, "path", "")
        if not method or not path:
            continue
        concrete = "/".join("x1" if part.startswith("{") else part
                            for part in path.split("/"))
        matched = description.match(method, concrete)
        if matched is not None:
            operation = matched[0]
            found[(operation.method, operation.template)] = operation
    return sorted(found.values(), key=lambda o: (o.template, o.method))


def _has_empty(value: Any, top: bool = True) -> bool:
    if isinstance(value, dict | list):
        if not value and not top:
            return True
        items = value.values() if isinstance(value, dict) else value
        return any(_has_empty(item, False) for item in items)
    return False


def invalid_request_strategy(operations: Sequence[Operation], *, form: bool = False,
                             path_values: Mapping[str, str] | None = None,
                             ) -> st.SearchStrategy[InvalidRequest]:
    """Invalid requests to ``operations``: each drops a required field, adds an unknown
    field or query parameter at some depth, breaks an enum, a type, a length or a range,
    or sets a read-only field (see :func:`daemon.testing.openapi.invalid_requests`).
    ``form``: only requests a form encoding can carry (it has no empty object or list).
    ``path_values``: path parameters to fill in by name (the account's own id where the
    emulator checks it); others are ``x1``."""
    names = st.text(string.ascii_lowercase + "_", min_size=3, max_size=12)

    def cases(op_and_name: tuple[Operation, str]) -> st.SearchStrategy[InvalidRequest]:
        operation, name = op_and_name
        made = [r for r in invalid_requests(operation, unknown=f"zz_{name}",
                                            path_values=path_values)
                if not (form and (_has_empty(r.body) or _has_empty(r.query)))]
        return st.sampled_from(made) if made else st.nothing()

    return st.tuples(st.sampled_from(list(operations)), names).flatmap(cases)


def encode_form(value: Any, prefix: str = "") -> list[tuple[str, str]]:
    """Nested values as bracketed form pairs: ``{"a": {"b": [1]}}`` -> ``a[b][0]=1``."""
    if isinstance(value, dict):
        pairs: list[tuple[str, str]] = []
        for key, item in value.items():
            pairs += encode_form(item, f"{prefix}[{key}]" if prefix else str(key))
        return pairs
    if isinstance(value, list):
        pairs = []
        for index, item in enumerate(value):
            pairs += encode_form(item, f"{prefix}[{index}]")
        return pairs
    if isinstance(value, bool):
        return [(prefix, "true" if value else "false")]
    return [(prefix, "" if value is None else str(value))]


def names_field(status: int, body: Any, invalid: InvalidRequest) -> bool:
    """The provider-neutral refusal: a 400 whose body names the offending field."""
    leaf = str(invalid.field[-1]) if invalid.field else ""
    return status == 400 and leaf in json.dumps(body)


async def check_refused(http: httpx.AsyncClient, invalid: InvalidRequest, *, form: bool,
                        refused: Refusal = names_field) -> None:
    """Send ``invalid`` through ``http`` (based at the emulator, authenticated) and assert
    ``refused`` holds for the answer."""
    query = httpx.QueryParams(dict(encode_form(invalid.query)))
    if invalid.body is None:
        response = await http.request(invalid.method, invalid.path, params=query)
    elif form:
        response = await http.request(invalid.method, invalid.path, params=query,
                                      data=dict(encode_form(invalid.body)))
    else:
        response = await http.request(invalid.method, invalid.path, params=query,
                                      json=invalid.body)
    try:
        body: Any = response.json()
    except ValueError:
        body = response.text
    assert refused(response.status_code, body, invalid), (
        f"{invalid.method} {invalid.path} breaking {invalid.location} "
        f"{list(invalid.field)} ({invalid.kind}) was not refused as the provider does: "
        f"{response.status_code} {str(body)[:500]}")
