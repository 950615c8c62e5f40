"""A small index over a provider's OpenAPI 3.0 description, for contract checks.

Operations are found by method and concrete path; JSON bodies are validated with
``jsonschema`` against the description's own component schemas (``$ref``s resolve inside the
document; OpenAPI's ``nullable`` becomes a JSON Schema null type). Form-encoded bodies
(Stripe v1) are checked by parameter name against the operation's request schema.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import cached_property
from typing import Any
from urllib.parse import parse_qsl

import jsonschema

_JSON_TYPES = ("application/json", "application/problem+json")


def _nullable(node: Any) -> Any:
    """``node`` with OpenAPI 3.0 ``nullable: true`` rewritten as JSON Schema null types."""
    if isinstance(node, list):
        return [_nullable(n) for n in node]
    if not isinstance(node, dict):
        return node
    out = {k: _nullable(v) for k, v in node.items()}
    if out.pop("nullable", False) is True:
        return {"anyOf": [out, {"type": "null"}]}
    return out


@dataclass(frozen=True, slots=True)
class Operation:
    method: str
    template: str
    spec: Mapping[str, Any]

    @property
    def operation_id(self) -> str:
        return str(self.spec.get("operationId", f"{self.method} {self.template}"))

    def request_schema(self, content_type: str) -> Mapping[str, Any] | None:
        content = (self.spec.get("requestBody") or {}).get("content") or {}
        media = content.get(content_type)
        return None if media is None else media.get("schema")

    def response_schema(self, status: int) -> Mapping[str, Any] | None:
        responses = self.spec.get("responses") or {}
        answer = responses.get(str(status)) or responses.get(f"{str(status)[0]}XX")
        if answer is None and status >= 400:
            answer = responses.get("default")
        if answer is None:
            return None
        content = answer.get("content") or {}
        for kind in _JSON_TYPES:
            if kind in content:
                return content[kind].get("schema")
        return None

    def query_parameters(self) -> set[str]:
        return {str(p["name"]) for p in self.spec.get("parameters") or []
                if p.get("in") == "query"}


class OpenAPI:
    """One provider's published API description, indexed."""

    def __init__(self, document: Mapping[str, Any], *, name: str) -> None:
        self.name = name
        self.document = document
        self._components = _nullable(document.get("components", {}))
        self._routes: list[tuple[re.Pattern[str], int, Operation]] = []
        for template, item in document.get("paths", {}).items():
            pattern = "^" + re.sub(r"\\\{[^}]+\\\}", "[^/]+", re.escape(template)) + "$"
            literal = len(re.sub(r"\{[^}]+\}", "", template))
            for method, spec in item.items():
                if method.lower() in ("get", "post", "put", "patch", "delete"):
                    self._routes.append(
                        (re.compile(pattern), literal, Operation(method.upper(), template, spec)))
        # The most literal template wins: /v1/customers/search before /v1/customers/{id}.
        self._routes.sort(key=lambda r: -r[1])

    def operation(self, method: str, path: str) -> Operation | None:
        for pattern, _, op in self._routes:
            if op.method == method.upper() and pattern.match(path):
                return op
        return None

    def validator(self, schema: Mapping[str, Any]) -> jsonschema.Draft4Validator:
        root = {**_nullable(dict(schema)), "components": self._components}
        return jsonschema.Draft4Validator(root)

    def schema_errors(self, schema: Mapping[str, Any], instance: Any, *,
                      limit: int = 5) -> list[str]:
        """Why ``instance`` does not fit ``schema`` (empty when it does)."""
        errors = sorted(self.validator(schema).iter_errors(instance),
                        key=lambda e: list(e.absolute_path))
        return [f"{'/'.join(str(p) for p in e.absolute_path) or '<root>'}: {e.message[:300]}"
                for e in errors[:limit]]

    def component(self, name: str) -> Mapping[str, Any]:
        return {"$ref": f"#/components/schemas/{name}"}

    @cached_property
    def operation_count(self) -> int:
        return len(self._routes)


def form_names(body: bytes) -> set[str]:
    """Top-level parameter names of a form body: ``metadata[k]`` counts as ``metadata``."""
    pairs = parse_qsl(body.decode("utf-8"), keep_blank_values=True)
    return {key.split("[", 1)[0] for key, _ in pairs}


def unknown_form_names(op: Operation, names: Iterable[str]) -> set[str]:
    schema = op.request_schema("application/x-www-form-urlencoded") or {}
    known = set((schema.get("properties") or {}).keys())
    return {n for n in names if n not in known}
