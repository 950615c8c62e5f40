"""A local Stripe: the v1 endpoints the Stripe plugin uses, with Stripe's semantics.

Requests are form-encoded (``metadata[key]=v``, ``expand[]=x``) and answered with objects
shaped like ``spec3.yaml``/``fixtures3.json``. What is emulated:

- API keys as ``Authorization: Bearer sk_test_...`` (or HTTP Basic with the key as user);
  ``Stripe-Account: acct_...`` acts for a connected account (rate limits and idempotency are
  per account; the store is shared).
- Connect OAuth: ``GET /oauth/authorize`` (redirects with a code), ``POST /oauth/token``
  (``authorization_code`` and ``refresh_token``; access tokens do not expire),
  ``POST /oauth/deauthorize``. OAuth errors are ``{"error", "error_description"}``.
- ``/v1/products`` (create with your own ``id``: a duplicate is 400
  ``resource_already_exists``; update; retrieve; list; delete, refused while the product has
  prices), ``/v1/prices`` (create, retrieve, list by product, update of mutable fields only:
  amounts are immutable), ``/v1/customers`` (create, update, retrieve, delete, list with exact
  case-sensitive ``email`` and ``created`` ranges), ``GET /v1/account``, and invoices for
  ticket sales:
  ``POST /v1/invoices`` (drafts; ``send_invoice`` needs ``days_until_due``),
  ``POST /v1/invoiceitems`` (onto a draft of the same customer and currency),
  ``POST /v1/invoices/{id}/finalize`` and ``/pay`` (``paid_out_of_band`` only),
  ``GET /v1/invoices`` (by ``customer``, ``status``, ``created`` ranges), stored in the
  ``transaction`` collection.
- Every request is first checked against Stripe's OpenAPI description (``spec3.yaml``, see
  docs/emulators.md): unknown parameters at any depth (body and query), missing ones,
  types, enums, lengths and ranges are refused with 400 ``invalid_request_error`` and
  ``param`` naming the first, as Stripe does; an unknown URL is 404.
- ``Idempotency-Key`` (<= 255 chars): a replay returns the first response with
  ``Idempotent-Replayed: true``; other parameters give 400 ``idempotency_error``. No result
  is saved for a request that failed validation (docs.stripe.com/idempotency). Stripe may
  prune keys 24 hours old: ``Emulator.forget_idempotency`` (``DELETE
  /_emulator/idempotency``) does that at once.
- Lists: ``limit`` 1-100 (default 10), ``starting_after``/``ending_before``, ``has_more``;
  newest first.
- Rate limit: 25 requests/s per account (test mode, docs.stripe.com/rate-limits); a 429
  carries ``code: rate_limit`` and ``Stripe-Should-Retry: true`` and no ``Retry-After``
  (Stripe does not document one).
"""

from __future__ import annotations

import base64
import json
import re
import secrets
import string
import time
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urlencode

from aiohttp import web

from daemon.errors import SyncdError
from daemon.logs import get_logger
from daemon.provider import EmulatorSettings
from daemon.testing.emulator import REPLAYED, UNSAVED, Emulator, Token
from daemon.testing.openapi import (
    Description,
    Problem,
    UnknownPath,
    audit_responses,
    check_request,
    find_description,
)
from plugins.stripe.webhooks import signature_header

__all__ = ["CLIENT_ID", "CONNECTED_ACCOUNT", "PLATFORM_ACCOUNT", "StripeEmulator",
           "decode_form"]

PLATFORM_ACCOUNT = "acct_1EmulatorPlatform"
CONNECTED_ACCOUNT = "acct_1EmulatorConnected"
CLIENT_ID = "ca_emulator"
API_VERSION = "2023-10-16"
#: The description requests are checked against, under the specs directory.
DESCRIPTION = "stripe/spec3.yaml"
# Stripe's documented limit, the emulator's own (never the plugin's). Source:
# shared/reference/providers.md (Stripe, Idempotency): keys of up to 255 characters.
IDEMPOTENCY_KEY_MAX = 255
_ALNUM = string.ascii_letters + string.digits
log = get_logger("syncd.emulator")
_KEY = re.compile(r"^([^\[\]]+)((?:\[[^\[\]]*\])*)$")

_PRODUCT_PARAMS = {"id", "name", "description", "active", "url", "statement_descriptor",
                   "unit_label", "metadata", "default_price_data", "images", "shippable",
                   "tax_code", "expand"}
_PRODUCT_UPDATE_PARAMS = (_PRODUCT_PARAMS - {"id", "default_price_data"}) | {"default_price"}
_PRICE_PARAMS = {"currency", "unit_amount", "product", "active", "lookup_key", "metadata",
                 "nickname", "tax_behavior", "transfer_lookup_key", "expand"}
_PRICE_UPDATE_PARAMS = {"active", "lookup_key", "metadata", "nickname", "tax_behavior",
                        "transfer_lookup_key", "expand"}
_CUSTOMER_PARAMS = {"email", "name", "phone", "description", "metadata", "address",
                    "preferred_locales", "expand"}
_INVOICE_PARAMS = {"customer", "auto_advance", "collection_method", "days_until_due",
                   "due_date", "currency", "description", "metadata", "footer",
                   "pending_invoice_items_behavior", "statement_descriptor", "expand"}
_INVOICE_ITEM_PARAMS = {"customer", "invoice", "amount", "currency", "description",
                        "metadata", "quantity", "unit_amount", "discountable", "expand"}
_FINALIZE_PARAMS = {"auto_advance", "expand"}
_PAY_PARAMS = {"paid_out_of_band", "forgive", "off_session", "payment_method", "source",
               "mandate", "expand"}


def _id(prefix: str, length: int = 14) -> str:
    return prefix + "".join(secrets.choice(_ALNUM) for _ in range(length))


def decode_form(form: Mapping[str, Any]) -> dict[str, Any]:
    """Stripe's bracketed form keys as nested values: ``a[b]=1&c[]=2`` -> ``{a:{b:1},c:[2]}``."""
    out: dict[str, Any] = {}
    for key, raw in form.items():
        value = raw if isinstance(raw, str) else str(raw)
        match = _KEY.match(key)
        if match is None:
            raise ValueError(f"Invalid parameter name: {key}")
        parts = [match.group(1), *re.findall(r"\[([^\[\]]*)\]", match.group(2))]
        target: Any = out
        for depth, part in enumerate(parts):
            last = depth == len(parts) - 1
            nxt = parts[depth + 1] if not last else None
            if isinstance(target, list):
                if last:
                    target.append(value)
                else:
                    target.append([] if nxt == "" else {})
                    target = target[-1]
                continue
            if last:
                target[part] = value
            else:
                target = target.setdefault(part, [] if nxt == "" else {})
                if not isinstance(target, dict | list):
                    raise ValueError(f"Invalid parameter name: {key}")
    return out


def _bool(value: Any) -> bool | None:
    if value in ("true", True):
        return True
    if value in ("false", False):
        return False
    return None


class _Invalid(SyncdError):
    def __init__(self, message: str, param: str | None = None, code: str | None = None,
                 status: int = 400) -> None:
        super().__init__(message)
        self.param, self.code, self.status = param, code, status


def _param(path: tuple[str | int, ...]) -> str:
    """A parameter as Stripe names it: ``default_price_data[currency]``, ``items[0]``."""
    head, *rest = [str(p) for p in path] or [""]
    return head + "".join(f"[{part}]" for part in rest)


def _refusal(problem: Problem) -> _Invalid:
    """One problem worded as Stripe's API words it."""
    param = _param(problem.path)
    value = problem.value
    shown = value if not isinstance(value, str) or len(value) <= 40 else value[:40] + "..."
    kind = problem.kind
    if kind == "unknown":
        return _Invalid(f"Received unknown parameter: {param}", param, "parameter_unknown")
    if kind == "missing":
        return _Invalid(f"Missing required param: {param}.", param, "parameter_missing")
    if kind == "read_only":
        return _Invalid(f"You cannot set {param}.", param, "parameter_unknown")
    if kind == "type":
        expected = problem.expected.split("|")
        if value == "":
            return _Invalid(f"You passed an empty string for '{param}'. We assume empty "
                            "values are an attempt to unset a parameter; however "
                            f"'{param}' cannot be unset. You should remove '{param}' from "
                            "your request or supply a non-empty value.", param,
                            "parameter_invalid_empty")
        if "integer" in expected:
            return _Invalid(f"Invalid integer: {shown}", param, "parameter_invalid_integer")
        if "boolean" in expected:
            return _Invalid(f"Invalid boolean: {shown}", param)
        if "object" in expected:
            return _Invalid(f"Invalid hash: {param} must be a hash", param)
        if "array" in expected:
            return _Invalid(f"Invalid array: {param} must be an array", param)
        return _Invalid(f"Invalid {problem.expected}: {param}", param)
    if kind == "enum":
        return _Invalid(f"Invalid {param}: must be one of {problem.expected}", param)
    if kind == "too_long":
        return _Invalid(f"Invalid string: {shown}; must be at most {problem.expected} "
                        "characters", param)
    if kind == "too_short":
        return _Invalid(f"Invalid string: {shown}; must be at least {problem.expected} "
                        "characters", param)
    if kind in ("too_large", "too_small"):
        bound = "at most" if kind == "too_large" else "at least"
        return _Invalid(f"Invalid {param}: must be {bound} {problem.expected}", param)
    if kind in ("too_many", "too_few"):
        bound = "at most" if kind == "too_many" else "at least"
        return _Invalid(f"Invalid array: {param} must have {bound} {problem.expected} "
                        "elements", param)
    return _Invalid(f"Invalid request: {param or 'body'}", param or None)


#: Stripe expands at most four levels deep (docs.stripe.com/expand: "Expansions have a
#: maximum depth of four levels").
EXPAND_DEPTH_MAX = 4


def _schema(document: Mapping[str, Any], schema: Any) -> Mapping[str, Any]:
    """``schema`` with its ``$ref`` followed and single object branches taken."""
    for _ in range(16):
        if not isinstance(schema, Mapping):
            return {}
        if "$ref" in schema:
            target: Any = document
            for part in str(schema["$ref"]).removeprefix("#/").split("/"):
                target = target.get(part, {}) if isinstance(target, Mapping) else {}
            schema = target
            continue
        branches = [b for b in schema.get("anyOf") or schema.get("oneOf") or ()
                    if isinstance(b, Mapping) and ("$ref" in b or b.get("type") == "object")]
        if branches:
            schema = branches[0]
            continue
        if schema.get("type") == "array" and "items" in schema:
            schema = schema["items"]
            continue
        return schema
    return {}


def expansion_problem(document: Mapping[str, Any], method: str, template: str,
                      entry: str) -> str | None:
    """Why Stripe refuses ``expand[]=entry`` on an operation, or None when it expands.

    Stripe's description marks what can be expanded: each object lists the fields leading
    to expandable ones in ``x-expandableFields``, and an expandable field carries
    ``x-expansionResources`` (the object it expands into). ``entry`` is a dotted path from
    the operation's answer (``data.default_price`` on a list)."""
    operation = ((document.get("paths") or {}).get(template) or {}).get(method) or {}
    answer = (((operation.get("responses") or {}).get("200") or {}).get("content") or {})
    current = _schema(document, (answer.get("application/json") or {}).get("schema"))
    parts = entry.split(".")
    if len(parts) > EXPAND_DEPTH_MAX:
        return (f"You cannot expand more than {EXPAND_DEPTH_MAX} levels of a property. "
                f"Property: {entry}")
    for depth, part in enumerate(parts):
        field = (current.get("properties") or {}).get(part)
        if part not in (current.get("x-expandableFields") or ()) or field is None:
            return f"This property cannot be expanded ({'.'.join(parts[:depth + 1])})."
        resources = field.get("x-expansionResources") if isinstance(field, Mapping) else None
        if depth == len(parts) - 1:
            if not resources:
                return f"This property cannot be expanded ({entry})."
            return None
        current = _schema(document, (resources.get("oneOf") or [{}])[0] if resources
                          else field)
    return None


class StripeEmulator(Emulator):
    """Stripe, locally."""

    name = "stripe"
    default_account = PLATFORM_ACCOUNT
    credential_kind = "api_key"

    def __init__(self, settings: EmulatorSettings | None = None) -> None:
        super().__init__(settings)
        self._codes: dict[str, str] = {}
        self._order = 0
        #: Creation order, to sort objects created within the same second.
        self._seq: dict[str, int] = {}
        #: Stripe's published description (None: not found, requests go unchecked).
        self.description: Description | None = find_description(DESCRIPTION, name="stripe",
                                                                form=True)
        if self.description is None:
            log.info("emulator.description_missing", provider=self.name,
                        description=DESCRIPTION)

    # --- base hooks ----------------------------------------------------------------------

    def _issue_default_token(self) -> Token:
        ttl = self.settings.access_token_ttl
        return self.tokens.issue_access(PLATFORM_ACCOUNT, ttl, prefix="sk_test_emu")

    def default_account_facts(self) -> dict[str, str]:
        return {"account": PLATFORM_ACCOUNT, "connected_account": CONNECTED_ACCOUNT}

    def error_response(self, status: int, code: str, message: str) -> web.Response:
        kind = {"internal_error": "api_error", "idempotency_key_reused": "idempotency_error",
                "unauthorized": "invalid_request_error"}.get(code, "invalid_request_error")
        if status >= 500:
            kind = "api_error"
        error: dict[str, Any] = {"type": kind, "message": message}
        if code not in ("internal_error", "unauthorized", "idempotency_key_reused"):
            error["code"] = code
        response = web.json_response({"error": error}, status=status)
        response.headers["Request-Id"] = _id("req_")
        if status == 429 or status >= 500 or status == 409:
            response.headers["Stripe-Should-Retry"] = "true"
        return response

    def unauthorized_response(self) -> web.Response:
        return self.error_response(401, "unauthorized",
                                   "Invalid API Key provided: the key is unknown, expired or "
                                   "revoked.")

    def rate_limited_response(self, retry_after: float) -> web.Response:
        # Documented: 429 with code rate_limit; stripe-python obeys Stripe-Should-Retry.
        # Retry-After is not documented for Stripe, so none is sent.
        return self.error_response(429, "rate_limit", "Request rate limit exceeded. Learn "
                                   "more about rate limits here https://stripe.com/docs/"
                                   "rate-limits.")

    def idempotency_mismatch_response(self, key: str) -> web.Response:
        return self.error_response(
            400, "idempotency_key_reused",
            "Keys for idempotent requests can only be used with the same parameters they "
            f"were first used with. Try using a key other than '{key}' if you meant to "
            "execute a different request.")

    def idempotency_in_flight_response(self, key: str) -> web.Response:
        return self.error_response(409, "idempotency_key_in_use", "There is currently "
                                   "another in-progress request using this Idempotent Key.")

    def rate_limit(self) -> tuple[float, float]:
        return (25.0, 25.0)

    async def check_request(self, request: web.Request) -> web.Response | None:
        """Refuse what Stripe refuses, as Stripe words it: the first problem against
        ``spec3.yaml``, 400 ``invalid_request_error`` with ``param``; 404 for a URL Stripe
        does not have."""
        if not self.settings.strict or self.description is None:
            return None
        try:
            problems = await check_request(self.description, request, decode=decode_form)
        except UnknownPath:
            if request.match_info.http_exception is None:
                return None  # emulated, not described there (an authorization page)
            return self._invalid(_Invalid(
                f"Unrecognized request URL ({request.method}: {request.path}). Please see "
                "https://stripe.com/docs or we can help at https://support.stripe.com/.",
                status=404))
        except ValueError as exc:
            return self._invalid(_Invalid(str(exc)))
        if problems:
            return self._invalid(_refusal(problems[0]))
        return await self._check_expand(request)

    async def _check_expand(self, request: web.Request) -> web.Response | None:
        """Refuse ``expand[]`` entries the answer cannot expand, as Stripe does."""
        assert self.description is not None
        found = self.description.match(request.method, request.path)
        if found is None:
            return None
        params = decode_form(request.query)
        if request.method == "POST":
            params.update(decode_form(await request.post()))
        expand = params.get("expand")
        entries = expand if isinstance(expand, list) else (
            [expand[k] for k in sorted(expand, key=int)] if isinstance(expand, dict) else [])
        for entry in entries:
            problem = expansion_problem(self.description.document, found[0].method.lower(),
                                        found[0].template, str(entry))
            if problem is not None:
                return self._invalid(_Invalid(problem))
        return None

    def is_public(self, request: web.Request) -> bool:
        return request.path.startswith("/oauth/")

    def authenticate(self, request: web.Request) -> str | None:
        header = request.headers.get("Authorization", "")
        scheme, _, value = header.partition(" ")
        key = value.strip()
        if scheme.lower() == "basic":
            try:
                key = base64.b64decode(key).decode().partition(":")[0]
            except (ValueError, UnicodeDecodeError):
                return None
        elif scheme.lower() != "bearer":
            return None
        token = self.tokens.lookup(key)
        return token.account if token else None

    def account_of(self, request: web.Request) -> str:
        connected = request.headers.get("Stripe-Account")
        if connected and connected.startswith("acct_"):
            return connected
        return super().account_of(request)

    def sign_webhook(self, body: bytes, url: str, timestamp: int) -> dict[str, str]:
        return {"Stripe-Signature": signature_header(body, timestamp,
                                                     self.settings.webhook_secret)}

    def webhook_event(self, collection: str, record_id: str, change: str) -> bytes:
        record = self.collection(collection).get(record_id, {"id": record_id,
                                                             "object": collection})
        event_type = f"{record.get('object', collection)}.{change}"
        event = {"id": _id("evt_", 24), "object": "event", "api_version": API_VERSION,
                 "created": int(time.time()), "data": {"object": record}, "livemode": False,
                 "pending_webhooks": 1, "request": {"id": None, "idempotency_key": None},
                 "type": event_type}
        return json.dumps(event, separators=(",", ":")).encode()

    def app(self) -> web.Application:
        app = super().app()
        audit_responses(app, self.description)
        return app

    def routes(self) -> list[web.RouteDef]:
        return [
            web.get("/oauth/authorize", self.oauth_authorize),
            web.post("/oauth/token", self.oauth_token),
            web.post("/oauth/deauthorize", self.oauth_deauthorize),
            web.get("/v1/account", self.get_account),
            web.post("/v1/products", self._write(self.create_product)),
            web.get("/v1/products", self.list_products),
            web.post("/v1/products/{id}", self._write(self.update_product)),
            web.get("/v1/products/{id}", self.get_product),
            web.delete("/v1/products/{id}", self._write(self.delete_product)),
            web.post("/v1/prices", self._write(self.create_price)),
            web.get("/v1/prices", self.list_prices),
            web.post("/v1/prices/{id}", self._write(self.update_price)),
            web.get("/v1/prices/{id}", self.get_price),
            web.post("/v1/customers", self._write(self.create_customer)),
            web.get("/v1/customers", self.list_customers),
            web.post("/v1/customers/{id}", self._write(self.update_customer)),
            web.get("/v1/customers/{id}", self.get_customer),
            web.delete("/v1/customers/{id}", self._write(self.delete_customer)),
            web.post("/v1/invoices", self._write(self.create_invoice)),
            web.get("/v1/invoices", self.list_invoices),
            web.get("/v1/invoices/{id}", self.get_invoice),
            web.post("/v1/invoices/{id}/finalize", self._write(self.finalize_invoice)),
            web.post("/v1/invoices/{id}/pay", self._write(self.pay_invoice)),
            web.post("/v1/invoiceitems", self._write(self.create_invoice_item)),
        ]

    # --- plumbing ------------------------------------------------------------------------

    def _invalid(self, exc: _Invalid) -> web.Response:
        response = self.error_response(exc.status, exc.code or "parameter_invalid", str(exc))
        body = json.loads(response.body if isinstance(response.body, bytes) else b"{}")
        if exc.param:
            body["error"]["param"] = exc.param
        if exc.code is None:
            body["error"].pop("code", None)
        fixed = web.json_response(body, status=exc.status)
        fixed.headers.update({k: v for k, v in response.headers.items()
                              if k in ("Request-Id", "Stripe-Should-Retry")})
        return fixed

    def _write(self, handler: Callable[[web.Request, dict[str, Any]], dict[str, Any]]) -> Any:
        """Wrap a handler: decode the form, check the idempotency key, map errors."""

        async def wrapped(request: web.Request) -> web.Response:
            try:
                params = decode_form(await request.post())
            except ValueError as exc:
                return self._invalid(_Invalid(str(exc)))
            key = request.headers.get("Idempotency-Key")
            if key is not None and (not key or len(key) > IDEMPOTENCY_KEY_MAX):
                return self._invalid(_Invalid(
                    f"Idempotency-Key must be 1 to {IDEMPOTENCY_KEY_MAX} characters long."))

            async def handle() -> web.Response:
                try:
                    result = handler(request, params)
                except _Invalid as exc:
                    # Stripe saves no result for a request that failed validation: a retry
                    # with the same key (and other parameters) runs afresh.
                    request[UNSAVED] = True
                    return self._invalid(exc)
                return web.json_response(result)

            fingerprint = {"path": request.path, "method": request.method, "params": params}
            response = await self.idempotent(request, key, fingerprint, handle)
            if key and request.get(REPLAYED):
                response.headers["Idempotent-Replayed"] = "true"
            if key:
                response.headers["Idempotency-Key"] = key
            response.headers.setdefault("Request-Id", _id("req_"))
            return response

        return wrapped

    @staticmethod
    def _check_params(params: Mapping[str, Any], allowed: set[str]) -> None:
        for name in params:
            if name not in allowed:
                raise _Invalid(f"Received unknown parameter: {name}", name)

    def _next(self) -> int:
        self._order += 1
        return self._order

    @staticmethod
    def _metadata(params: Mapping[str, Any], current: Mapping[str, str]) -> dict[str, str]:
        given = params.get("metadata")
        if given is None:
            return dict(current)
        if given == "":
            return {}
        if not isinstance(given, dict):
            raise _Invalid("Invalid metadata: must be a hash", "metadata")
        merged = dict(current)
        for key, value in given.items():
            if len(key) > 40:
                raise _Invalid("Metadata keys can be at most 40 characters", f"metadata[{key}]")
            if value == "":
                merged.pop(key, None)
            elif len(str(value)) > 500:
                raise _Invalid("Metadata values can be at most 500 characters",
                               f"metadata[{key}]")
            else:
                merged[key] = str(value)
        if len(merged) > 50:
            raise _Invalid("Metadata can have at most 50 keys", "metadata")
        return merged

    def _expand(self, obj: dict[str, Any], params: Mapping[str, Any]) -> dict[str, Any]:
        expand = params.get("expand") or []
        if "default_price" in expand and isinstance(obj.get("default_price"), str):
            price = self.collection("price").get(obj["default_price"])
            return {**obj, "default_price": price}
        return obj

    def _list(self, request: web.Request, items: list[dict[str, Any]], url: str) -> web.Response:
        try:
            limit = int(request.query.get("limit", "10"))
        except ValueError:
            limit = 0
        if not 1 <= limit <= 100:
            return self._invalid(_Invalid("Invalid integer: limit must be 1 to 100", "limit"))
        items = sorted(items, key=lambda o: (o["created"], self._seq.get(o["id"], 0)),
                       reverse=True)
        after, before = request.query.get("starting_after"), request.query.get("ending_before")
        ids = [o["id"] for o in items]
        if after:
            if after not in ids:
                return self._invalid(_Invalid(f"No such object: '{after}'", "starting_after",
                                              "resource_missing"))
            items = items[ids.index(after) + 1:]
            page, more = items[:limit], len(items) > limit
        elif before:
            if before not in ids:
                return self._invalid(_Invalid(f"No such object: '{before}'", "ending_before",
                                              "resource_missing"))
            items = items[:ids.index(before)]
            page, more = items[-limit:], len(items) > limit
        else:
            page, more = items[:limit], len(items) > limit
        return web.json_response({"object": "list", "url": url, "has_more": more,
                                  "data": [self._public(o) for o in page]})

    @staticmethod
    def _public(obj: Mapping[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in obj.items() if not k.startswith("_")}

    def _missing(self, kind: str, object_id: str, param: str = "id") -> _Invalid:
        return _Invalid(f"No such {kind}: '{object_id}'", param, "resource_missing", 404)

    def put(self, collection: str, record_id: str, record: dict[str, Any], *,
            change: str | None = None) -> dict[str, Any]:
        stored = super().put(collection, record_id, record, change=change)
        return self._public(stored)

    # --- account and OAuth ---------------------------------------------------------------

    async def get_account(self, request: web.Request) -> web.Response:
        account = self.account_of(request)
        return web.json_response({"id": account, "object": "account", "type": "standard",
                                  "charges_enabled": True, "payouts_enabled": True,
                                  "country": "US", "default_currency": "usd",
                                  "details_submitted": True, "email": "owner@example.com"})

    def _oauth_error(self, error: str, description: str, status: int = 400) -> web.Response:
        return web.json_response({"error": error, "error_description": description},
                                 status=status)

    async def oauth_authorize(self, request: web.Request) -> web.Response:
        q = request.query
        if q.get("client_id") != CLIENT_ID:
            return self._oauth_error("invalid_client", "No such application")
        code = _id("ac_", 24)
        self._codes[code] = CONNECTED_ACCOUNT
        params = {"code": code, "scope": q.get("scope", "read_write")}
        if "state" in q:
            params["state"] = q["state"]
        if q.get("redirect_uri"):
            raise web.HTTPFound(f"{q['redirect_uri']}?{urlencode(params)}")
        return web.json_response(params)

    def _platform_secret_ok(self, request: web.Request, form: Mapping[str, Any]) -> bool:
        secret = form.get("client_secret")
        if isinstance(secret, str):
            return self.tokens.lookup(secret) is not None
        return self.authenticate(request) is not None

    async def oauth_token(self, request: web.Request) -> web.Response:
        form = decode_form(await request.post())
        if not self._platform_secret_ok(request, form):
            return self._oauth_error("invalid_client", "Invalid API key provided", 401)
        grant = form.get("grant_type")
        if grant == "authorization_code":
            account = self._codes.pop(str(form.get("code")), None)
            if account is None:
                return self._oauth_error("invalid_grant", "Authorization code does not exist")
            refresh = self.tokens.issue_refresh(account, prefix="rt_emu")
        elif grant == "refresh_token":
            found = self.tokens.lookup(str(form.get("refresh_token")), "refresh")
            if found is None:
                return self._oauth_error("invalid_grant", "Refresh token does not exist")
            account, refresh = found.account, found
        else:
            return self._oauth_error("unsupported_grant_type", "Unsupported grant_type")
        access = self.tokens.issue_access(account, None, prefix="sk_test_conn")
        return web.json_response({
            "access_token": access.value, "livemode": False, "refresh_token": refresh.value,
            "token_type": "bearer", "stripe_publishable_key": _id("pk_test_", 24),
            "stripe_user_id": account, "scope": str(form.get("scope") or "read_write"),
        })

    async def oauth_deauthorize(self, request: web.Request) -> web.Response:
        form = decode_form(await request.post())
        if not self._platform_secret_ok(request, form):
            return self._oauth_error("invalid_client", "Invalid API key provided", 401)
        account = form.get("stripe_user_id")
        if form.get("client_id") != CLIENT_ID or not isinstance(account, str):
            return self._oauth_error("invalid_request", "client_id and stripe_user_id are "
                                     "required")
        self.tokens.revoke_account(account)
        return web.json_response({"stripe_user_id": account})

    # --- products ------------------------------------------------------------------------

    def _product_fields(self, params: Mapping[str, Any], product: dict[str, Any]) -> None:
        for key in ("name", "description", "url", "statement_descriptor", "unit_label",
                    "tax_code"):
            if key in params:
                product[key] = params[key] or None
        if "name" in params and not params["name"]:
            raise _Invalid("You must supply a name.", "name")
        if product.get("statement_descriptor") and len(product["statement_descriptor"]) > 22:
            raise _Invalid("statement_descriptor must be at most 22 characters",
                           "statement_descriptor")
        if product.get("unit_label") and len(product["unit_label"]) > 12:
            raise _Invalid("unit_label must be at most 12 characters", "unit_label")
        if "active" in params:
            active = _bool(params["active"])
            if active is None:
                raise _Invalid("Invalid boolean: " + str(params["active"]), "active")
            product["active"] = active
        product["metadata"] = self._metadata(params, product.get("metadata") or {})

    def create_product(self, request: web.Request, params: dict[str, Any]) -> dict[str, Any]:
        self._check_params(params, _PRODUCT_PARAMS)
        if not params.get("name"):
            raise _Invalid("Missing required param: name.", "name", "parameter_missing")
        product_id = params.get("id") or _id("prod_")
        if product_id in self.collection("product"):
            raise _Invalid(f"Product already exists: '{product_id}'", "id",
                           "resource_already_exists")
        now = int(time.time())
        product: dict[str, Any] = {
            "id": product_id, "object": "product", "active": True, "created": now,
            "default_price": None, "description": None, "features": [], "images": [],
            "livemode": False, "metadata": {}, "name": params["name"],
            "package_dimensions": None, "shippable": None, "statement_descriptor": None,
            "tax_code": None, "unit_label": None, "updated": now, "url": None,
        }
        self._seq[product_id] = self._next()
        self._product_fields(params, product)
        price_data = params.get("default_price_data")
        price = None
        if price_data is not None:
            if not isinstance(price_data, dict):
                raise _Invalid("Invalid hash", "default_price_data")
            price = self._new_price({**price_data, "product": product_id}, "default_price_data")
            product["default_price"] = price["id"]
        self.put("product", product_id, product, change="created")
        if price is not None:
            self.put("price", price["id"], price, change="created")
        return self._expand(self._public(product), params)

    def update_product(self, request: web.Request, params: dict[str, Any]) -> dict[str, Any]:
        product_id = request.match_info["id"]
        self._check_params(params, _PRODUCT_UPDATE_PARAMS)
        product = self.collection("product").get(product_id)
        if product is None:
            raise self._missing("product", product_id)
        candidate = dict(product)
        self._product_fields(params, candidate)
        if "default_price" in params:
            price = self.collection("price").get(str(params["default_price"]))
            if price is None or price["product"] != product_id:
                raise _Invalid(f"No such price: '{params['default_price']}'", "default_price",
                               "resource_missing")
            if not price["active"]:
                raise _Invalid("The default price must be active.", "default_price")
            candidate["default_price"] = price["id"]
        candidate["updated"] = int(time.time())
        product.update(candidate)
        self.notify_change("product", product_id, "updated")
        return self._expand(self._public(product), params)

    async def get_product(self, request: web.Request) -> web.Response:
        product = self.collection("product").get(request.match_info["id"])
        if product is None:
            return self._invalid(self._missing("product", request.match_info["id"]))
        return web.json_response(self._public(product))

    async def list_products(self, request: web.Request) -> web.Response:
        items = list(self.collection("product").values())
        if "active" in request.query:
            wanted = _bool(request.query["active"])
            items = [p for p in items if p["active"] == wanted]
        return self._list(request, items, "/v1/products")

    def delete_product(self, request: web.Request, params: dict[str, Any]) -> dict[str, Any]:
        product_id = request.match_info["id"]
        if product_id not in self.collection("product"):
            raise self._missing("product", product_id)
        if any(p["product"] == product_id for p in self.collection("price").values()):
            raise _Invalid("This product cannot be deleted because it has one or more "
                           "user-created prices.")
        del self.collection("product")[product_id]
        self.notify_change("product", product_id, "deleted")
        return {"id": product_id, "object": "product", "deleted": True}

    # --- prices --------------------------------------------------------------------------

    def _new_price(self, params: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
        def where(name: str) -> str:
            return f"{prefix}[{name}]" if prefix else name

        currency = params.get("currency")
        if not isinstance(currency, str) or not re.fullmatch(r"[a-z]{3}", currency):
            raise _Invalid("Invalid currency: " + str(currency), where("currency"))
        raw = params.get("unit_amount")
        if not isinstance(raw, str) or not raw.isdigit():
            raise _Invalid("Invalid integer: " + str(raw), where("unit_amount"))
        product_id = str(params.get("product"))
        if product_id not in self.collection("product") and not prefix:
            raise _Invalid(f"No such product: '{product_id}'", "product", "resource_missing")
        amount = int(raw)
        now = int(time.time())
        price: dict[str, Any] = {
            "id": _id("price_", 24), "object": "price", "active": True,
            "billing_scheme": "per_unit", "created": now, "currency": currency,
            "custom_unit_amount": None, "livemode": False,
            "lookup_key": params.get("lookup_key"), "metadata": {}, "nickname": None,
            "product": product_id, "recurring": None, "tax_behavior": "unspecified",
            "tiers_mode": None, "transform_quantity": None, "type": "one_time",
            "unit_amount": amount, "unit_amount_decimal": str(amount),
        }
        self._seq[price["id"]] = self._next()
        price["metadata"] = self._metadata(params, {})
        return price

    def create_price(self, request: web.Request, params: dict[str, Any]) -> dict[str, Any]:
        self._check_params(params, _PRICE_PARAMS)
        if "product" not in params:
            raise _Invalid("Missing required param: product.", "product", "parameter_missing")
        price = self._new_price(params)
        return self.put("price", price["id"], price, change="created")

    def update_price(self, request: web.Request, params: dict[str, Any]) -> dict[str, Any]:
        price_id = request.match_info["id"]
        self._check_params(params, _PRICE_UPDATE_PARAMS)  # amounts are immutable
        price = self.collection("price").get(price_id)
        if price is None:
            raise self._missing("price", price_id)
        if "active" in params:
            active = _bool(params["active"])
            if active is None:
                raise _Invalid("Invalid boolean", "active")
            product = self.collection("product").get(price["product"])
            if not active and product and product.get("default_price") == price_id:
                raise _Invalid("This price cannot be archived because it is the default price "
                               "of its product.", "active")
            price["active"] = active
        price["metadata"] = self._metadata(params, price["metadata"])
        if "lookup_key" in params:
            price["lookup_key"] = params["lookup_key"] or None
        self.notify_change("price", price_id, "updated")
        return self._public(price)

    async def get_price(self, request: web.Request) -> web.Response:
        price = self.collection("price").get(request.match_info["id"])
        if price is None:
            return self._invalid(self._missing("price", request.match_info["id"]))
        return web.json_response(self._public(price))

    async def list_prices(self, request: web.Request) -> web.Response:
        items = list(self.collection("price").values())
        if "product" in request.query:
            items = [p for p in items if p["product"] == request.query["product"]]
        if "active" in request.query:
            wanted = _bool(request.query["active"])
            items = [p for p in items if p["active"] == wanted]
        return self._list(request, items, "/v1/prices")

    # --- customers -----------------------------------------------------------------------

    def _customer_fields(self, params: Mapping[str, Any], customer: dict[str, Any]) -> None:
        for key in ("email", "name", "phone", "description"):
            if key in params:
                customer[key] = params[key] or None
        email = customer.get("email")
        if email and (len(email) > 512 or not re.fullmatch(r"[^@\s]+@[^@\s]+\.[^@\s]+", email)):
            raise _Invalid(f"Invalid email address: {email}", "email", "email_invalid")
        if customer.get("phone") and len(customer["phone"]) > 20:
            raise _Invalid("phone must be at most 20 characters", "phone")
        customer["metadata"] = self._metadata(params, customer.get("metadata") or {})

    def create_customer(self, request: web.Request, params: dict[str, Any]) -> dict[str, Any]:
        self._check_params(params, _CUSTOMER_PARAMS)
        customer: dict[str, Any] = {
            "id": _id("cus_"), "object": "customer", "address": None, "balance": 0,
            "created": int(time.time()), "currency": None, "default_source": None,
            "delinquent": False, "description": None, "discount": None, "email": None,
            "invoice_prefix": _id("", 7).upper(),
            "invoice_settings": {"custom_fields": None, "default_payment_method": None,
                                 "footer": None, "rendering_options": None},
            "livemode": False, "metadata": {}, "name": None, "next_invoice_sequence": 1,
            "phone": None, "preferred_locales": [], "shipping": None, "tax_exempt": "none",
            "test_clock": None,
        }
        self._seq[customer["id"]] = self._next()
        self._customer_fields(params, customer)
        return self.put("customer", customer["id"], customer, change="created")

    def update_customer(self, request: web.Request, params: dict[str, Any]) -> dict[str, Any]:
        customer_id = request.match_info["id"]
        self._check_params(params, _CUSTOMER_PARAMS)
        customer = self.collection("customer").get(customer_id)
        if customer is None:
            raise self._missing("customer", customer_id)
        candidate = dict(customer)
        self._customer_fields(params, candidate)
        customer.update(candidate)
        self.notify_change("customer", customer_id, "updated")
        return self._public(customer)

    async def get_customer(self, request: web.Request) -> web.Response:
        customer = self.collection("customer").get(request.match_info["id"])
        if customer is None:
            return self._invalid(self._missing("customer", request.match_info["id"]))
        return web.json_response(self._public(customer))

    async def list_customers(self, request: web.Request) -> web.Response:
        items = list(self.collection("customer").values())
        if "email" in request.query:  # exact and case-sensitive, as Stripe documents
            items = [c for c in items if c.get("email") == request.query["email"]]
        try:
            items = self._filter_created(items, decode_form(request.query).get("created"))
        except (ValueError, _Invalid) as exc:
            return self._invalid(exc if isinstance(exc, _Invalid) else _Invalid(str(exc)))
        return self._list(request, items, "/v1/customers")

    def delete_customer(self, request: web.Request, params: dict[str, Any]) -> dict[str, Any]:
        customer_id = request.match_info["id"]
        if customer_id not in self.collection("customer"):
            raise self._missing("customer", customer_id)
        del self.collection("customer")[customer_id]
        self.notify_change("customer", customer_id, "deleted")
        return {"id": customer_id, "object": "customer", "deleted": True}

    # --- invoices (ticket sales recorded as invoices paid out of band) --------------------
    # Invoices live in the "transaction" collection: they are what syncd pushes for sales.

    def _invoice(self, invoice_id: str) -> dict[str, Any]:
        invoice = self.collection("transaction").get(invoice_id)
        if invoice is None:
            raise self._missing("invoice", invoice_id)
        return invoice

    def create_invoice(self, request: web.Request, params: dict[str, Any]) -> dict[str, Any]:
        self._check_params(params, _INVOICE_PARAMS)
        customer_id = params.get("customer")
        if not customer_id:
            raise _Invalid("Missing required param: customer.", "customer", "parameter_missing")
        customer = self.collection("customer").get(str(customer_id))
        if customer is None:
            raise _Invalid(f"No such customer: '{customer_id}'", "customer", "resource_missing")
        method = params.get("collection_method", "charge_automatically")
        if method not in ("charge_automatically", "send_invoice"):
            raise _Invalid("Invalid collection_method", "collection_method")
        now = int(time.time())
        due: int | None = None
        if method == "send_invoice":
            days = params.get("days_until_due")
            if params.get("due_date"):
                due = int(params["due_date"])
            elif isinstance(days, str) and days.isdigit():
                due = now + int(days) * 86400
            else:
                raise _Invalid("Invoices with collection_method=send_invoice need "
                               "days_until_due or due_date.", "days_until_due")
        auto_advance = _bool(params.get("auto_advance", "false"))
        currency = str(params.get("currency") or customer.get("currency") or "usd")
        invoice_id = _id("in_", 24)
        invoice: dict[str, Any] = {
            "id": invoice_id, "object": "invoice", "account_country": "US",
            "account_name": None, "account_tax_ids": None, "amount_due": 0, "amount_paid": 0,
            "amount_remaining": 0, "amount_shipping": 0, "application": None,
            "application_fee_amount": None, "attempt_count": 0, "attempted": False,
            "auto_advance": bool(auto_advance),
            "automatic_tax": {"enabled": False, "status": None}, "billing_reason": "manual",
            "charge": None, "collection_method": method, "created": now, "currency": currency,
            "custom_fields": None, "customer": customer["id"],
            "customer_address": customer.get("address"),
            "customer_email": customer.get("email"), "customer_name": customer.get("name"),
            "customer_phone": customer.get("phone"), "customer_shipping": None,
            "customer_tax_exempt": "none", "customer_tax_ids": [],
            "default_payment_method": None, "default_source": None, "default_tax_rates": [],
            "description": params.get("description") or None, "discount": None,
            "discounts": [], "due_date": due, "effective_at": None, "ending_balance": None,
            "footer": params.get("footer") or None, "from_invoice": None,
            "hosted_invoice_url": None, "invoice_pdf": None, "last_finalization_error": None,
            "latest_revision": None,
            "lines": {"object": "list", "data": [], "has_more": False,
                      "url": f"/v1/invoices/{invoice_id}/lines"},
            "livemode": False, "metadata": {}, "next_payment_attempt": None, "number": None,
            "on_behalf_of": None, "paid": False, "paid_out_of_band": False,
            "payment_intent": None,
            "payment_settings": {"default_mandate": None, "payment_method_options": None,
                                 "payment_method_types": None},
            "period_end": now, "period_start": now, "post_payment_credit_notes_amount": 0,
            "pre_payment_credit_notes_amount": 0, "quote": None, "receipt_number": None,
            "rendering_options": None, "shipping_cost": None, "shipping_details": None,
            "starting_balance": 0, "statement_descriptor": params.get("statement_descriptor")
            or None, "status": "draft",
            "status_transitions": {"finalized_at": None, "marked_uncollectible_at": None,
                                   "paid_at": None, "voided_at": None},
            "subscription": None, "subscription_details": {"metadata": None},
            "subtotal": 0, "subtotal_excluding_tax": 0, "tax": None, "test_clock": None,
            "total": 0, "total_discount_amounts": [], "total_excluding_tax": 0,
            "total_tax_amounts": [], "transfer_data": None, "webhooks_delivered_at": None,
        }
        self._seq[invoice_id] = self._next()
        invoice["metadata"] = self._metadata(params, {})
        if params.get("pending_invoice_items_behavior", "exclude") == "include":
            for item in self.collection("invoiceitem").values():
                if item["customer"] == customer["id"] and item["invoice"] is None:
                    self._attach(invoice, item)
        return self.put("transaction", invoice_id, invoice, change="created")

    def _attach(self, invoice: dict[str, Any], item: dict[str, Any]) -> None:
        item["invoice"] = invoice["id"]
        line = {
            "id": _id("il_", 24), "object": "line_item", "amount": item["amount"],
            "amount_excluding_tax": item["amount"], "currency": item["currency"],
            "description": item["description"], "discount_amounts": [], "discountable": True,
            "discounts": [], "invoice_item": item["id"], "livemode": False,
            "metadata": dict(item["metadata"]), "period": item["period"],
            "price": item["price"], "proration": False,
            "proration_details": {"credited_items": None}, "quantity": item["quantity"],
            "subscription": None, "tax_amounts": [], "tax_rates": [], "type": "invoiceitem",
            "unit_amount_excluding_tax": item["unit_amount_decimal"],
        }
        invoice["lines"]["data"].append(line)
        total = sum(int(x["amount"]) for x in invoice["lines"]["data"])
        invoice.update({"subtotal": total, "subtotal_excluding_tax": total, "total": total,
                        "total_excluding_tax": total, "amount_due": total,
                        "amount_remaining": total})

    def create_invoice_item(self, request: web.Request, params: dict[str, Any]) -> dict[str, Any]:
        self._check_params(params, _INVOICE_ITEM_PARAMS)
        customer_id = str(params.get("customer") or "")
        if customer_id not in self.collection("customer"):
            raise _Invalid(f"No such customer: '{customer_id}'", "customer",
                           "resource_missing")
        raw = params.get("amount")
        if not isinstance(raw, str) or not re.fullmatch(r"-?\d+", raw):
            raise _Invalid("Invalid integer: " + str(raw), "amount")
        currency = params.get("currency")
        if not isinstance(currency, str) or not re.fullmatch(r"[a-z]{3}", currency):
            raise _Invalid("Invalid currency: " + str(currency), "currency")
        invoice = None
        if params.get("invoice"):
            invoice = self._invoice(str(params["invoice"]))
            if invoice["customer"] != customer_id:
                raise _Invalid("The invoice belongs to another customer.", "invoice")
            if invoice["status"] != "draft":
                raise _Invalid("You can only add invoice items to draft invoices.", "invoice",
                               "invoice_not_editable")
            if invoice["currency"] != currency:
                raise _Invalid("The invoice item currency must match the invoice's.",
                               "currency")
        amount, now = int(raw), int(time.time())
        price = {"id": _id("price_", 24), "object": "price", "active": False,
                 "billing_scheme": "per_unit", "created": now, "currency": currency,
                 "custom_unit_amount": None, "livemode": False, "lookup_key": None,
                 "metadata": {}, "nickname": None, "product": _id("prod_"), "recurring": None,
                 "tax_behavior": "unspecified", "tiers_mode": None, "transform_quantity": None,
                 "type": "one_time", "unit_amount": amount, "unit_amount_decimal": str(amount)}
        item: dict[str, Any] = {
            "id": _id("ii_", 24), "object": "invoiceitem", "amount": amount,
            "currency": currency, "customer": customer_id, "date": now,
            "description": params.get("description") or None, "discountable": True,
            "discounts": [], "invoice": None, "livemode": False, "metadata": {},
            "period": {"end": now, "start": now}, "price": price, "proration": False,
            "quantity": 1, "subscription": None, "tax_rates": [], "test_clock": None,
            "unit_amount": amount, "unit_amount_decimal": str(amount),
        }
        item["metadata"] = self._metadata(params, {})
        self.collection("invoiceitem")[item["id"]] = item
        if invoice is not None:
            self._attach(invoice, item)
        return self._public(item)

    def finalize_invoice(self, request: web.Request, params: dict[str, Any]) -> dict[str, Any]:
        self._check_params(params, _FINALIZE_PARAMS)
        invoice = self._invoice(request.match_info["id"])
        if invoice["status"] != "draft":
            raise _Invalid("This invoice is already finalized, you can't re-finalize a "
                           "non-draft invoice.", None, "invoice_already_finalized")
        now = int(time.time())
        invoice["status"] = "open"
        invoice["number"] = f"{invoice['id'][-8:].upper()}-0001"
        invoice["effective_at"] = now
        invoice["status_transitions"]["finalized_at"] = now
        invoice["hosted_invoice_url"] = f"https://invoice.stripe.com/i/{invoice['id']}"
        if "auto_advance" in params:
            invoice["auto_advance"] = bool(_bool(params["auto_advance"]))
        if invoice["amount_due"] == 0:
            invoice.update({"status": "paid", "paid": True})
            invoice["status_transitions"]["paid_at"] = now
        self.notify_change("transaction", invoice["id"], "updated")
        return self._public(invoice)

    def pay_invoice(self, request: web.Request, params: dict[str, Any]) -> dict[str, Any]:
        self._check_params(params, _PAY_PARAMS)
        invoice = self._invoice(request.match_info["id"])
        if invoice["status"] == "paid":
            raise _Invalid("Invoice is already paid", None, "invoice_already_paid")
        if invoice["status"] != "open":
            raise _Invalid("You can only pay open invoices.", None, "invoice_not_open")
        if _bool(params.get("paid_out_of_band")) is not True:
            raise _Invalid("The emulator records out-of-band payments only; pass "
                           "paid_out_of_band=true.", "paid_out_of_band")
        now = int(time.time())
        invoice.update({"status": "paid", "paid": True, "paid_out_of_band": True,
                        "amount_paid": invoice["amount_due"], "amount_remaining": 0,
                        "attempted": True})
        invoice["status_transitions"]["paid_at"] = now
        self.notify_change("transaction", invoice["id"], "updated")
        return self._public(invoice)

    async def list_invoices(self, request: web.Request) -> web.Response:
        """``GET /v1/invoices``: by ``customer``, ``status`` and ``created`` (an integer or a
        range ``created[gte|gt|lte|lt]``), newest first."""
        try:
            query = decode_form(request.query)
            items = self._filter_created(list(self.collection("transaction").values()),
                                         query.get("created"))
        except (ValueError, _Invalid) as exc:
            return self._invalid(exc if isinstance(exc, _Invalid) else _Invalid(str(exc)))
        for key in ("customer", "status", "collection_method"):
            if key in query:
                items = [i for i in items if i.get(key) == query[key]]
        return self._list(request, items, "/v1/invoices")

    @staticmethod
    def _filter_created(items: list[dict[str, Any]], created: Any) -> list[dict[str, Any]]:
        if created is None:
            return items
        bounds = created if isinstance(created, dict) else {"eq": created}
        tests: dict[str, Callable[[int, int], bool]] = {
            "eq": lambda a, b: a == b, "gte": lambda a, b: a >= b, "gt": lambda a, b: a > b,
            "lte": lambda a, b: a <= b, "lt": lambda a, b: a < b}
        for op, raw in bounds.items():
            if op not in tests or not isinstance(raw, str) or not raw.lstrip("-").isdigit():
                raise _Invalid("Invalid created: an integer or a hash of gt, gte, lt, lte "
                               "integers", "created")
            items = [i for i in items if tests[op](int(i["created"]), int(raw))]
        return items

    async def get_invoice(self, request: web.Request) -> web.Response:
        invoice = self.collection("transaction").get(request.match_info["id"])
        if invoice is None:
            return self._invalid(self._missing("invoice", request.match_info["id"]))
        return web.json_response(self._public(invoice))

