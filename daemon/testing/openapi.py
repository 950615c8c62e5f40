"""Requests checked against a provider's published OpenAPI 3.0 description.

Emulators use this to refuse what the real service refuses before they handle a request:
unknown paths, unknown or misspelt query parameters and body fields at any depth, missing
required ones, wrong types, enum values, string lengths, numeric ranges, array sizes and
read-only fields. A third-party emulator uses it the same way (see
:class:`daemon.testing.kit.DescribedEmulator`).

- :func:`specs_dir` finds the descriptions: ``$SYNCD_EMULATOR_SPECS``, else the nearest
  ``shared/specs`` beside the checkout or one of its parents. None when there are none.
- :func:`load_description` loads a document once per process (JSON directly; YAML parsed
  once and kept as JSON in the user cache, keyed by the file's digest, so the next process
  starts in milliseconds).
- :class:`Description` finds the operation of a request and compiles each operation's
  validator on first use, then keeps it.
- :class:`Problem` is one refusal, neutral of provider; each emulator words it in its own
  error shape.

Rules beyond plain JSON Schema, as the providers behave: an object schema that lists
``properties`` and says nothing of ``additionalProperties`` is closed (both Stripe and
Square refuse unknown fields); ``readOnly`` fields are refused in requests; ``nullable``
allows null. With ``form=True`` (Stripe's form encoding) scalars arrive as strings and are
read as the schema's type (``"true"``, ``"12"``), and ``a[0]=x`` is an array.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import platformdirs
from aiohttp import web

from daemon.errors import SyncdError

__all__ = [
    "BROKEN_ON_PURPOSE",
    "RESPONSE_AUDIT",
    "SPECS_ENV",
    "Description",
    "InvalidRequest",
    "Operation",
    "Problem",
    "ProblemKind",
    "ResponseAudit",
    "UnknownPath",
    "audit_responses",
    "check_request",
    "find_description",
    "invalid_requests",
    "load_description",
    "sample",
    "specs_dir",
]

#: The environment variable naming the directory of API descriptions.
SPECS_ENV = "SYNCD_EMULATOR_SPECS"

ProblemKind = Literal["unknown", "missing", "type", "enum", "too_long", "too_short",
                      "too_large", "too_small", "too_many", "too_few", "read_only",
                      "pattern", "body"]

Path_ = tuple[str | int, ...]


@dataclass(frozen=True, slots=True)
class Problem:
    """One reason the provider refuses a request.

    ``location`` is ``"query"``, ``"path"`` or ``"body"``; ``path`` the parameter or field,
    outermost first (ints index arrays); ``expected`` the type, values or limit broken.
    """

    kind: ProblemKind
    location: str
    path: Path_
    expected: str = ""
    value: Any = None


# --- finding and loading descriptions -----------------------------------------------------


def specs_dir() -> Path | None:
    """The directory of provider API descriptions, or None when there is none."""
    configured = os.environ.get(SPECS_ENV)
    if configured:
        path = Path(configured).expanduser()
        return path if path.is_dir() else None
    for parent in Path(__file__).resolve().parents[2:]:
        candidate = parent / "shared" / "specs"
        if candidate.is_dir():
            return candidate
    return None


@functools.cache
def load_description(path: Path) -> Mapping[str, Any]:
    """A description document, parsed once per process.

    YAML is parsed once per file version and kept as JSON in the user cache directory.
    """
    raw = path.read_bytes()
    if path.suffix == ".json":
        return dict(json.loads(raw))
    digest = hashlib.sha256(raw).hexdigest()[:24]
    cache = Path(platformdirs.user_cache_dir("syncd")) / "openapi" / f"{digest}.json"
    try:
        return dict(json.loads(cache.read_bytes()))
    except (OSError, ValueError):
        pass
    document = _parse_yaml(raw)
    try:
        cache.parent.mkdir(parents=True, exist_ok=True)
        partial = cache.with_suffix(f".{os.getpid()}.tmp")
        partial.write_text(json.dumps(document), "utf-8")
        partial.replace(cache)
    except OSError:
        pass  # a read-only cache costs the next process one more parse, nothing else
    return document


def _parse_yaml(raw: bytes) -> dict[str, Any]:
    try:
        import yaml
    except ImportError:
        from ruamel.yaml import YAML

        return dict(YAML(typ="safe", pure=True).load(raw))
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    return dict(yaml.load(raw, Loader=loader))  # noqa: S506 - a safe loader


# --- compiled schemas ---------------------------------------------------------------------


_INT = re.compile(r"-?\d+")
_NUM = re.compile(r"-?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?")


class _Node:
    """One schema, compiled: what validation needs, with ``$ref``s resolved."""

    __slots__ = ("additional", "any_of", "closed", "enum", "items", "max_items", "max_length",
                 "maximum", "min_items", "min_length", "minimum", "nullable", "pattern",
                 "properties", "read_only", "required", "types")

    def __init__(self) -> None:
        self.types: frozenset[str] = frozenset()
        self.nullable = False
        self.enum: tuple[Any, ...] | None = None
        self.properties: dict[str, _Node] = {}
        self.required: tuple[str, ...] = ()
        self.closed = False
        self.additional: _Node | None = None
        self.items: _Node | None = None
        self.any_of: tuple[_Node, ...] = ()
        self.min_length: int | None = None
        self.max_length: int | None = None
        self.minimum: float | None = None
        self.maximum: float | None = None
        self.min_items: int | None = None
        self.max_items: int | None = None
        self.pattern: re.Pattern[str] | None = None
        self.read_only = False


class _Compiler:
    def __init__(self, document: Mapping[str, Any]) -> None:
        self.document = document
        self.memo: dict[int, _Node] = {}
        self.wrapped: dict[tuple[str, bool, bool], _Node] = {}

    def lookup(self, ref: str) -> Mapping[str, Any] | None:
        """The schema a local ``$ref`` points at; None when it points nowhere (the Square
        description has a few such)."""
        target: Any = self.document
        for part in ref.removeprefix("#/").split("/"):
            if not isinstance(target, Mapping):
                return None
            target = target.get(part.replace("~1", "/").replace("~0", "~"))
        return target if isinstance(target, Mapping) else None

    def resolve(self, schema: Mapping[str, Any]) -> Mapping[str, Any]:
        """A parameter, body or response object with its ``$ref`` followed."""
        for _ in range(32):
            if "$ref" not in schema:
                break
            schema = self.lookup(str(schema["$ref"])) or {}
        return schema

    def compile(self, schema: Mapping[str, Any]) -> _Node:
        if "$ref" in schema:
            target = self.lookup(str(schema["$ref"]))
            inner = self.compile(target) if target is not None else _Node()
            nullable, read_only = bool(schema.get("nullable")), bool(schema.get("readOnly"))
            if not (nullable or read_only):
                return inner
            # Siblings of a $ref (OpenAPI 3.0 tools honour nullable and readOnly there).
            key = (str(schema["$ref"]), nullable, read_only)
            wrapper = self.wrapped.get(key)
            if wrapper is None:
                wrapper = _Node()
                wrapper.any_of, wrapper.nullable, wrapper.read_only = (inner,), nullable, \
                    read_only
                self.wrapped[key] = wrapper
            return wrapper
        known = self.memo.get(id(schema))
        if known is not None:
            return known
        node = _Node()
        self.memo[id(schema)] = node
        s: Mapping[str, Any] = schema
        for part in s.get("allOf") or ():
            s = {**self.resolve(part), **{k: v for k, v in s.items() if k != "allOf"}}
        kind = s.get("type")
        node.types = frozenset([kind] if isinstance(kind, str) else kind or ())
        node.nullable = bool(s.get("nullable"))
        node.read_only = bool(s.get("readOnly"))
        if "enum" in s:
            node.enum = tuple(s["enum"])
            if None in node.enum:
                node.nullable = True
        node.any_of = tuple(self.compile(b) for b in (s.get("anyOf") or s.get("oneOf") or ()))
        props = s.get("properties")
        if isinstance(props, Mapping):
            node.properties = {name: self.compile(sub) for name, sub in props.items()}
            node.required = tuple(s.get("required") or ())
        extra = s.get("additionalProperties")
        if isinstance(extra, Mapping):
            node.additional = self.compile(extra)
        node.closed = extra is False or (extra is None and isinstance(props, Mapping))
        if "items" in s:
            node.items = self.compile(s["items"])
        node.min_length, node.max_length = s.get("minLength"), s.get("maxLength")
        node.minimum, node.maximum = s.get("minimum"), s.get("maximum")
        node.min_items, node.max_items = s.get("minItems"), s.get("maxItems")
        if isinstance(s.get("pattern"), str):
            try:
                node.pattern = re.compile(s["pattern"])
            except re.error:
                node.pattern = None
        if not node.types and (node.properties or node.additional is not None):
            node.types = frozenset({"object"})
        return node


# --- validation ---------------------------------------------------------------------------


def _as_type(value: Any, kind: str, form: bool) -> tuple[bool, Any]:
    """Whether ``value`` is of JSON type ``kind`` (reading form strings when ``form``), and
    the value read as that type."""
    if kind == "object":
        return isinstance(value, dict), value
    if kind == "array":
        if isinstance(value, list):
            return True, value
        if form and isinstance(value, dict) and all(k.isdigit() for k in value):
            return True, [value[k] for k in sorted(value, key=int)]
        return False, value
    if kind == "string":
        return isinstance(value, str), value
    if kind == "boolean":
        if isinstance(value, bool):
            return True, value
        if form and value in ("true", "false"):
            return True, value == "true"
        return False, value
    if kind == "integer":
        if isinstance(value, int) and not isinstance(value, bool):
            return True, value
        if form and isinstance(value, str) and _INT.fullmatch(value):
            return True, int(value)
        return False, value
    if kind == "number":
        if isinstance(value, int | float) and not isinstance(value, bool):
            return True, value
        if form and isinstance(value, str) and _NUM.fullmatch(value):
            return True, float(value)
        return False, value
    return True, value


class _Check:
    def __init__(self, location: str, form: bool, request: bool) -> None:
        self.location, self.form, self.request = location, form, request

    def problem(self, kind: ProblemKind, path: Path_, expected: Any = "",
                value: Any = None) -> Problem:
        return Problem(kind, self.location, path, str(expected), value)

    def run(self, node: _Node, value: Any, path: Path_) -> list[Problem]:
        if value is None and (node.nullable or not self.request):
            return []
        if node.any_of:
            return self.any_of(node, value, path)
        if node.types:
            for kind in sorted(node.types):
                ok, read = _as_type(value, kind, self.form)
                if ok:
                    return self.shape(node, kind, read, path)
            return [self.problem("type", path, "|".join(sorted(node.types)), value)]
        return self.shape(node, None, value, path)

    def any_of(self, node: _Node, value: Any, path: Path_) -> list[Problem]:
        best: list[Problem] | None = None
        for branch in node.any_of:
            found = self.run(branch, value, path)
            if not found:
                return []
            typed = not (len(found) == 1 and found[0].kind in ("type", "enum")
                         and found[0].path == path)
            if best is None or (typed and (best[0].path == path
                                           and best[0].kind in ("type", "enum"))):
                best = found
        assert best is not None
        if best[0].path == path and best[0].kind in ("type", "enum"):
            expected = sorted({t for b in node.any_of for t in b.types})
            enums = [str(v) for b in node.any_of for v in (b.enum or ())]
            if enums and all(b.enum or b.types <= {"string"} for b in node.any_of):
                return [self.problem("enum", path, ", ".join(enums), value)]
            return [self.problem("type", path, "|".join(expected), value)]
        return best

    def shape(self, node: _Node, kind: str | None, value: Any, path: Path_) -> list[Problem]:
        if node.enum is not None and value not in node.enum:
            return [self.problem("enum", path, ", ".join(str(v) for v in node.enum), value)]
        if kind == "string" and isinstance(value, str):
            if node.max_length is not None and len(value) > node.max_length:
                return [self.problem("too_long", path, node.max_length, value)]
            if node.min_length is not None and len(value) < node.min_length:
                return [self.problem("too_short", path, node.min_length, value)]
            if node.pattern is not None and not node.pattern.search(value):
                return [self.problem("pattern", path, node.pattern.pattern, value)]
        if kind in ("integer", "number"):
            if node.maximum is not None and value > node.maximum:
                return [self.problem("too_large", path, node.maximum, value)]
            if node.minimum is not None and value < node.minimum:
                return [self.problem("too_small", path, node.minimum, value)]
        if kind == "array" and isinstance(value, list):
            if node.max_items is not None and len(value) > node.max_items:
                return [self.problem("too_many", path, node.max_items)]
            if node.min_items is not None and len(value) < node.min_items:
                return [self.problem("too_few", path, node.min_items)]
            found: list[Problem] = []
            if node.items is not None:
                for index, item in enumerate(value):
                    found += self.run(node.items, item, (*path, index))
            return found
        if kind == "object" and isinstance(value, dict):
            return self.fields(node, value, path)
        return []

    def fields(self, node: _Node, value: Mapping[str, Any], path: Path_) -> list[Problem]:
        found: list[Problem] = []
        for name, item in value.items():
            sub = node.properties.get(name)
            if sub is None:
                if node.additional is not None:
                    found += self.run(node.additional, item, (*path, name))
                elif node.closed:
                    found.append(self.problem("unknown", (*path, name)))
                continue
            if self.request and sub.read_only:
                found.append(self.problem("read_only", (*path, name)))
                continue
            found += self.run(sub, item, (*path, name))
        found += [self.problem("missing", (*path, name)) for name in node.required
                  if name not in value]
        return found


# --- operations ---------------------------------------------------------------------------


@dataclass(slots=True)
class _Param:
    name: str
    required: bool
    node: _Node
    #: An array in one comma-separated value (``style: form``, ``explode: false``).
    comma: bool = False

    def read(self, value: Any) -> Any:
        """A query value as the parameter's schema reads it: an array parameter arrives as
        one string (``a,b`` when not exploded) or as repeated keys."""
        if isinstance(value, str) and "array" in _scalar(self.node).types:
            return value.split(",") if self.comma else [value]
        return value


@dataclass(slots=True)
class Operation:
    """One operation of a description, compiled on first use."""

    method: str
    template: str
    operation_id: str
    form: bool
    #: What the server's URL puts before ``template`` (``/3.0`` for Mailchimp).
    base_path: str = ""
    query: dict[str, _Param] = field(default_factory=dict)
    path_params: dict[str, _Param] = field(default_factory=dict)
    body: _Node | None = None
    body_required: bool = False
    content_type: str | None = None
    responses: dict[str, _Node] = field(default_factory=dict)

    def check(self, *, query: Mapping[str, Any], path_params: Mapping[str, str],
              body: Any) -> list[Problem]:
        """Every problem of one request: decoded query (nested for deep objects), path
        parameters, and the decoded body (None when there is none)."""
        found: list[Problem] = []
        q = _Check("query", True, True)
        for name, value in query.items():
            param = self.query.get(name)
            if param is None:
                found.append(q.problem("unknown", (name,)))
            else:
                found += q.run(param.node, param.read(value), (name,))
        found += [q.problem("missing", (name,)) for name, p in self.query.items()
                  if p.required and name not in query]
        p = _Check("path", True, True)
        for name, value in path_params.items():
            param = self.path_params.get(name)
            if param is not None:
                found += p.run(param.node, value, (name,))
        if self.body is not None and body is not None:
            found += _Check("body", self.form, True).run(self.body, body, ())
        elif body is None and self.body_required:
            found.append(Problem("body", "body", ()))
        return found

    def check_response(self, status: int, body: Any) -> list[Problem]:
        """Problems of a response body against the status's schema (none when the
        description has no schema for it). Objects stay open: a provider adds fields."""
        node = self.responses.get(str(status)) or self.responses.get(f"{str(status)[0]}XX")
        if node is None and status >= 400:
            node = self.responses.get("default")
        if node is None:
            return []
        check = _Check("response", False, False)
        return [p for p in check.run(node, body, ()) if p.kind != "unknown"]


class Description:
    """A provider's OpenAPI description, indexed by path; operations compiled on use.

    ``form`` says request bodies are form-encoded (Stripe v1), so scalars arrive as strings.
    ``base_path`` is what the server URL puts before every path (Mailchimp's
    ``https://<dc>.api.mailchimp.com/3.0``: ``/3.0``); requests are matched without it.
    """

    def __init__(self, document: Mapping[str, Any], *, name: str, form: bool = False,
                 base_path: str = "") -> None:
        self.document = document
        self.name = name
        self.form = form
        self.base_path = base_path.rstrip("/")
        self.version = str((document.get("info") or {}).get("version", ""))
        self._compiler = _Compiler(document)
        self._operations: dict[tuple[str, str], Operation] = {}
        literal: list[tuple[str, re.Pattern[str]]] = []
        templated: list[tuple[int, str, re.Pattern[str]]] = []
        for template in document.get("paths") or {}:
            holes = template.count("{")
            pattern = re.compile("^" + re.sub(r"\\\{([^}]+)\\\}", r"(?P<\1>[^/]+)",
                                              re.escape(template)) + "$")
            if holes:
                templated.append((holes, template, pattern))
            else:
                literal.append((template, pattern))
        templated.sort(key=lambda t: t[0])
        self._literal = {t for t, _ in literal}
        self._templated = [(t, p) for _, t, p in templated]

    @classmethod
    def from_file(cls, path: Path, *, name: str, form: bool = False,
                  base_path: str = "") -> Description:
        """The description in ``path``, kept once per process and file."""
        return _described(path, name, form, base_path)

    def match(self, method: str, path: str) -> tuple[Operation, dict[str, str]] | None:
        """The operation serving ``method path`` and its path parameters, or None."""
        method = method.lower()
        if self.base_path:
            if not path.startswith(self.base_path + "/"):
                return None
            path = path[len(self.base_path):]
        paths = self.document.get("paths") or {}
        if path in self._literal and method in paths[path]:
            return self.operation(method, path), {}
        for template, pattern in self._templated:
            found = pattern.match(path)
            if found and method in paths[template]:
                return self.operation(method, template), found.groupdict()
        return None

    def operations(self) -> Iterable[Operation]:
        """Every operation of the description (compiling each)."""
        for template, item in (self.document.get("paths") or {}).items():
            for method in item:
                if method in ("get", "post", "put", "patch", "delete"):
                    yield self.operation(method, template)

    def operation(self, method: str, template: str) -> Operation:
        """The compiled operation ``method template`` (cached)."""
        key = (method.lower(), template)
        known = self._operations.get(key)
        if known is None:
            known = self._compile(*key)
            self._operations[key] = known
        return known

    def _compile(self, method: str, template: str) -> Operation:
        item = self.document["paths"][template]
        spec = item[method]
        c = self._compiler
        op = Operation(method.upper(), template, str(spec.get("operationId", "")), self.form,
                       self.base_path)
        for raw in [*(item.get("parameters") or ()), *(spec.get("parameters") or ())]:
            param = c.resolve(raw)
            where = param.get("in")
            style = param.get("style", "form")
            compiled = _Param(str(param["name"]), bool(param.get("required")),
                              c.compile(param.get("schema") or {}),
                              comma=style == "form" and param.get("explode") is False)
            if where == "query":
                op.query[compiled.name] = compiled
            elif where == "path":
                op.path_params[compiled.name] = compiled
        body = c.resolve(spec.get("requestBody") or {})
        content = body.get("content") or {}
        for kind in ("application/json", "application/x-www-form-urlencoded"):
            if kind in content:
                op.content_type = kind
                op.body = c.compile(content[kind].get("schema") or {})
                op.body_required = bool(body.get("required"))
                break
        else:
            # A body of another kind (QuickBooks' application/text query) is not checked.
            op.content_type = next(iter(content), None)
        for status, answer in (spec.get("responses") or {}).items():
            media = (c.resolve(answer).get("content") or {}).get("application/json")
            if media and media.get("schema"):
                op.responses[str(status)] = c.compile(media["schema"])
        return op


@functools.cache
def _described(path: Path, name: str, form: bool, base_path: str) -> Description:
    return Description(load_description(path), name=name, form=form, base_path=base_path)


def find_description(relative: str, *, name: str, form: bool = False) -> Description | None:
    """The description at ``relative`` under :func:`specs_dir` (``"stripe/spec3.yaml"``),
    loaded once per process; None when it is not there."""
    root = specs_dir()
    if root is None or not (root / relative).is_file():
        return None
    return Description.from_file((root / relative).resolve(), name=name, form=form)


class UnknownPath(SyncdError):
    """The description has no operation for the request's method and path."""


def _plain(pairs: Mapping[str, Any]) -> dict[str, Any]:
    """Query (or form) pairs by name; a repeated name gives the list of its values."""
    out: dict[str, Any] = {}
    for key, value in pairs.items():
        name = str(key)
        if name in out:
            before = out[name]
            out[name] = [*before, value] if isinstance(before, list) else [before, value]
        else:
            out[name] = value
    return out


_NO_BODY = frozenset({"GET", "HEAD", "DELETE", "OPTIONS"})


async def check_request(description: Description, request: web.Request, *,
                        decode: Callable[[Mapping[str, Any]], Mapping[str, Any]] = _plain,
                        ) -> list[Problem]:
    """Every problem of an aiohttp request against ``description``.

    ``decode`` turns the query (and a form body) into parameters: plain by default, or a
    provider's nested-key reading (Stripe's ``a[b]=1``). A JSON body that does not parse is
    one ``body`` problem. Raises :class:`UnknownPath` when no operation matches; raises
    ``ValueError`` from ``decode`` for a malformed key.
    """
    found = description.match(request.method, request.path)
    if found is None:
        raise UnknownPath(f"{request.method} {request.path}")
    operation, path_params = found
    query = decode(request.query)
    body: Any = None
    if request.method not in _NO_BODY or request.can_read_body:
        if description.form:
            form = await request.post()
            body = decode(form) if form or operation.body_required else None
        elif operation.content_type in (None, "application/json"):
            raw = await request.read()
            if raw.strip():
                try:
                    body = json.loads(raw)
                except ValueError:
                    return [Problem("body", "body", ())]
    return operation.check(query=query, path_params=path_params, body=body)


# --- invalid requests, made from a description --------------------------------------------


@dataclass(frozen=True, slots=True)
class InvalidRequest:
    """A request with exactly one problem, made from an operation's description: the
    provider must refuse it, naming ``field`` (in ``location``) as ``kind``."""

    method: str
    path: str
    query: dict[str, Any]
    body: Any
    kind: ProblemKind
    location: str
    field: Path_


def _object(node: _Node) -> _Node | None:
    """The object schema ``node`` stands for, through single-branch wrappers; else None."""
    for _ in range(8):
        if len(node.any_of) == 1:
            node = node.any_of[0]
            continue
        break
    if node.any_of or "object" not in node.types or not node.properties:
        return None
    return node


def _scalar(node: _Node) -> _Node:
    while len(node.any_of) == 1:
        node = node.any_of[0]
    return node


def _read_only(node: _Node) -> bool:
    while not node.read_only and len(node.any_of) == 1:
        node = node.any_of[0]
    return node.read_only


def sample(node: _Node, depth: int = 0) -> Any:
    """A small value ``node`` accepts: required fields only, shortest strings."""
    node = _scalar(node)
    if node.any_of:
        return sample(node.any_of[0], depth + 1)
    if node.enum:
        return next((v for v in node.enum if v not in ("", None)), node.enum[0])
    kind = next(iter(sorted(node.types)), "object")
    if kind == "object":
        if depth > 12:
            return {}
        return {name: sample(node.properties[name], depth + 1)
                for name in node.required if name in node.properties}
    if kind == "array":
        count = node.min_items or 0
        return [sample(node.items, depth + 1) for _ in range(count)] if node.items else []
    if kind == "boolean":
        return True
    if kind in ("integer", "number"):
        low = node.minimum if node.minimum is not None else 1
        return int(low) if kind == "integer" else float(low)
    return "x" * max(node.min_length or 1, 1)


def _wrong_type(node: _Node) -> Any:
    kinds = node.types
    if "object" in kinds or "array" in kinds:
        return "not-a-structure"
    if kinds & {"integer", "number", "boolean"}:
        return "not-a-value"
    return {"nested": "x"}


def _scalar_faults(name: str, node: _Node) -> Iterable[tuple[ProblemKind, Any]]:
    if _read_only(node):
        yield "read_only", sample(node)
        return
    node = _scalar(node)
    if node.any_of or not node.types:
        return
    if node.enum and node.types <= {"string"}:
        yield "enum", "NOT_ONE_OF_THEM"
    if node.types == frozenset({"string"}) and not node.enum:
        if node.max_length is not None and node.max_length < 100_000:
            yield "too_long", "x" * (node.max_length + 1)
        yield "type", _wrong_type(node)
    if node.types <= {"integer", "number"}:
        if node.maximum is not None:
            yield "too_large", int(node.maximum) + 1
        if node.minimum is not None:
            yield "too_small", int(node.minimum) - 1
        yield "type", _wrong_type(node)
    if node.types == frozenset({"boolean"}):
        yield "type", _wrong_type(node)


def _with(base: Any, path: Path_, value: Any, *, drop: bool = False) -> Any:
    """``base`` (a copy) with ``value`` at ``path`` (or that key dropped)."""
    if not path:
        return value
    head, rest = path[0], path[1:]
    if isinstance(base, list):
        copy_list = list(base)
        copy_list[int(head)] = _with(copy_list[int(head)], rest, value, drop=drop)
        return copy_list
    copy = dict(base)
    if drop and not rest:
        copy.pop(str(head), None)
    else:
        copy[str(head)] = _with(copy.get(str(head), {}), rest, value, drop=drop)
    return copy


def invalid_requests(operation: Operation, *, unknown: str = "zz_not_a_field",
                     depth: int = 3, path_values: Mapping[str, str] | None = None,
                     ) -> list[InvalidRequest]:
    """Requests to ``operation`` each breaking its description once: an unknown field or
    query parameter (named ``unknown``), a required field dropped, a wrong type, a value
    outside the enum, a string over its length, a number out of range, a read-only field
    set, at every depth up to ``depth`` objects in. Path parameters are ``x1`` unless
    ``path_values`` names them."""
    values = path_values or {}
    path = operation.base_path + re.sub(r"\{([^}]+)\}", lambda m: values.get(m[1], "x1"),
                                        operation.template)
    query = {name: sample(p.node) for name, p in operation.query.items() if p.required}
    out: list[InvalidRequest] = []

    def make(q: dict[str, Any], body: Any, kind: ProblemKind, where: str,
             field_: Path_) -> None:
        out.append(InvalidRequest(operation.method, path, q, body, kind, where, field_))

    make({**query, unknown: "1"}, None if operation.body is None else
         sample(operation.body), "unknown", "query", (unknown,))
    base = sample(operation.body) if operation.body is not None else None
    for name, param in operation.query.items():
        for kind, value in _scalar_faults(name, param.node):
            # A query string carries scalars: a structure is not a wrong type there.
            if kind != "read_only" and not isinstance(value, dict):
                make({**query, name: value}, base, kind, "query", (name,))
    root = _object(operation.body) if operation.body is not None else None
    if root is None:
        return out

    def walk(node: _Node, at: Path_, body: Any, level: int) -> None:
        if node.closed:
            make(query, _with(body, (*at, unknown), 1), "unknown", "body", (*at, unknown))
        for name in node.required:
            make(query, _with(body, (*at, name), None, drop=True), "missing", "body",
                 (*at, name))
        for name, sub in node.properties.items():
            for kind, value in _scalar_faults(name, sub):
                make(query, _with(body, (*at, name), value), kind, "body", (*at, name))
            inner = _object(sub)
            if inner is not None and level < depth and not _read_only(sub):
                walk(inner, (*at, name), _with(body, (*at, name), sample(inner)), level + 1)
            items = _scalar(sub).items
            element = _object(items) if items is not None else None
            if (element is not None and level < depth and "array" in _scalar(sub).types
                    and not _read_only(sub)):
                walk(element, (*at, name, 0), _with(body, (*at, name), [sample(element)]),
                     level + 1)

    walk(root, (), base, 0)
    return out


# --- responses ------------------------------------------------------------------------------


@dataclass(slots=True)
class ResponseAudit:
    """Responses checked against the description's response schemas, when switched on
    (the test suite switches it on for every emulator it runs): what did not fit."""

    enabled: bool = False
    checked: int = 0
    problems: list[str] = field(default_factory=list)

    def observe(self, description: Description | None, method: str, path: str, *,
                status: int, body: bytes | None, content_type: str) -> None:
        """Check one response (JSON bodies of described operations only)."""
        if not self.enabled or description is None or not body:
            return
        if not content_type.startswith("application/json"):
            return
        found = description.match(method, path)
        if found is None:
            return
        try:
            value = json.loads(body)
        except ValueError:
            self.problems.append(f"{description.name} {method} {path} {status}: not JSON")
            return
        self.checked += 1
        for problem in found[0].check_response(status, value)[:3]:
            where = ".".join(str(p) for p in problem.path) or "(body)"
            self.problems.append(f"{description.name} {method} {found[0].template} "
                                 f"{status}: {where} {problem.kind} (expected "
                                 f"{problem.expected or 'present'}, got {problem.value!r:.60})")


#: The process's response audit (see :class:`ResponseAudit`).
RESPONSE_AUDIT = ResponseAudit()

#: Set on a request whose answer an emulator broke on purpose (a fault knob): the audit
#: leaves that answer out, as no description covers a body cut short in transit.
BROKEN_ON_PURPOSE: web.RequestKey[bool] = web.RequestKey("syncd_broken_on_purpose", bool)


def audit_responses(app: web.Application, description: Description | None) -> None:
    """Check every response ``app`` sends against ``description`` while
    :data:`RESPONSE_AUDIT` is enabled."""

    async def on_prepare(request: web.Request, response: web.StreamResponse) -> None:
        if (isinstance(response, web.Response) and not request.path.startswith("/_emulator/")
                and not request.get(BROKEN_ON_PURPOSE)):
            raw = response.body
            RESPONSE_AUDIT.observe(description, request.method, request.path,
                                   status=response.status,
                                   body=raw if isinstance(raw, bytes) else None,
                                   content_type=response.content_type)

    app.on_response_prepare.append(on_prepare)
