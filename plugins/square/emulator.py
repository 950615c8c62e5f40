"""A local Square: the endpoints the Square plugin uses, with Square's semantics.

Shapes follow ``api.json`` (Square-Version 2025-08-20). What is emulated:

- OAuth: ``GET /oauth2/authorize`` (redirects with a code), ``POST /oauth2/token`` (code flow:
  non-rotating refresh token; PKCE with ``code_verifier``: single-use refresh tokens that
  rotate, 90 days, ``refresh_token_expires_at``), ``POST /oauth2/revoke``
  (``Authorization: Client <secret>``, revokes every token of the seller),
  ``POST /oauth2/token/status``. Expiry is ISO-8601 ``expires_at``.
- ``GET /v2/locations``, ``GET /v2/catalog/info``, ``POST /v2/catalog/batch-upsert`` (1,000
  objects per batch, 10,000 per request, batches all-or-nothing and independent, ``#`` ids
  replaced and mapped, one catalog write per seller at a time: a concurrent one gets 429),
  ``POST /v2/catalog/batch-delete``, ``POST /v2/catalog/list``-like ``GET /v2/catalog/list``.
- Customers: ``POST /v2/customers``, ``bulk-create`` (1-100 entries keyed by idempotency key),
  ``bulk-update``, ``search`` (exact e-mail ignoring case, exact reference id, cursor), ``GET``,
  ``PUT``, ``DELETE /v2/customers/{id}``, ``GET /v2/customers`` (cursor).
- ``POST /v2/orders`` (idempotency key <= 192; ``metadata`` keys <= 60 of ``[a-zA-Z0-9_-]``,
  values <= 255, at most 10), ``GET /v2/orders/{id}``, ``POST /v2/orders/search``
  (``location_ids`` 1-10, ``query.filter`` by ``state_filter``, ``customer_filter`` and
  ``date_time_filter.created_at``/``updated_at`` with the sort on the same field, ``limit``
  up to 1,000, default 500, cursor), ``POST /v2/payments`` with ``source_id: EXTERNAL`` for
  an order (key <= 45; amount must equal the amount due).
- Inventory: ``POST /v2/inventory/changes/batch-create`` (BatchChangeInventory: at most 100
  changes, ``ADJUSTMENT`` and ``PHYSICAL_COUNT``, all or nothing, idempotency key <= 128),
  ``POST /v2/inventory/counts/batch-retrieve`` (newest ``calculated_at`` first, ``limit`` up
  to 1,000, cursor) and ``POST /v2/inventory/changes/batch-retrieve`` (oldest ``occurred_at``
  first, cursor). Counts are Square's: the latest physical count (by the client's
  ``occurred_at``) plus the ``IN_STOCK`` adjustments that occurred after it, so an offline
  sale reported late still lands in its place. Each committed request sends one signed
  ``inventory.count.updated`` with the counts it changed. ``POST /_emulator/square/pos-sale``
  (and :meth:`SquareEmulator.pos_sale`) sells at the register: an ``IN_STOCK`` to ``SOLD``
  adjustment made by Square Point of Sale.

Every request is first checked against Square's OpenAPI description (``api.json``, see
docs/emulators.md): unknown fields and query parameters, missing fields, types, enums,
lengths, ranges and read-only fields are refused with 400 and one error per problem naming
its ``field``; an unknown path is 404 ``NOT_FOUND``.

Errors are ``{"errors": [{"category", "code", "detail", "field"?}]}``. Square publishes no
numeric rate limits; the emulator allows 20 requests a second per seller with a burst of 40
(an assumption) and answers 429 ``RATE_LIMITED`` / ``RATE_LIMIT_ERROR`` **without**
``Retry-After``: whether Square sends one is not documented.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import re
import secrets
import string
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any
from urllib.parse import urlencode

from aiohttp import web

from daemon.logs import get_logger
from daemon.provider import EmulatorSettings
from daemon.testing.emulator import BATCH_SIZE, Emulator
from daemon.testing.openapi import (
    Description,
    Problem,
    UnknownPath,
    audit_responses,
    check_request,
    find_description,
)
from plugins.square.webhooks import SIGNATURE_HEADER, sign

__all__ = ["CLIENT_ID", "CLIENT_SECRET", "SquareEmulator"]

CLIENT_ID = "sq0idp-emulator"
CLIENT_SECRET = "sq0csp-emulator-secret"  # noqa: S105 - a well-known emulator value
MERCHANT_ID = "MLEMULATOR0001"
LOCATION_ID = "LEMULATOR00001"

# Square's documented limits, the emulator's own (never the plugin's, so that a wrong
# constant in the plugin is refused here rather than mirrored). Source:
# shared/reference/providers.md (Square), from api.json (BatchUpsertCatalogObjectsRequest,
# BulkCreateCustomersRequest, the idempotency_key maxLength of each request).
MAX_BATCH_OBJECTS = 1000  # objects per batch of POST /v2/catalog/batch-upsert
MAX_REQUEST_OBJECTS = 10_000  # objects per batch-upsert request
MAX_BULK_CUSTOMERS = 100  # entries of POST /v2/customers/bulk-create
CATALOG_IDEMPOTENCY_MAX = 128
ORDER_IDEMPOTENCY_MAX = 192
PAYMENT_IDEMPOTENCY_MAX = 45
#: BatchChangeInventory takes at most 100 changes a request: documented by Square
#: ("Max size is 100 changes", BatchChangeInventoryRequest in Square's connect SDK
#: reference); api.json gives no maxItems. Its idempotency_key: 1-128 characters (api.json).
MAX_INVENTORY_CHANGES = 100
INVENTORY_IDEMPOTENCY_MAX = 128
#: An adjustment's or physical count's occurred_at may be at most 24 hours old, and not in
#: the future (api.json, InventoryAdjustment.occurred_at); the emulator allows a minute of
#: clock skew forward.
INVENTORY_PAST_LIMIT = timedelta(hours=24)
INVENTORY_FUTURE_SKEW = timedelta(minutes=1)
ACCESS_TTL = 30 * 86400.0
PKCE_REFRESH_TTL = 90 * 86400.0

_CATEGORIES = {400: "INVALID_REQUEST_ERROR", 401: "AUTHENTICATION_ERROR",
               403: "AUTHENTICATION_ERROR", 404: "INVALID_REQUEST_ERROR",
               409: "INVALID_REQUEST_ERROR", 429: "RATE_LIMIT_ERROR"}
_ID_ALPHABET = string.ascii_uppercase + string.digits
#: The description requests are checked against, under the specs directory.
DESCRIPTION = "square/api.json"
log = get_logger("syncd.emulator")

#: Square's error code for each kind of problem (its ``ErrorCode`` enum).
_PROBLEM_CODES = {
    "unknown": "BAD_REQUEST", "missing": "MISSING_REQUIRED_PARAMETER",
    "enum": "INVALID_ENUM_VALUE", "too_long": "VALUE_TOO_LONG", "too_short": "VALUE_TOO_SHORT",
    "too_large": "VALUE_TOO_HIGH", "too_small": "VALUE_TOO_LOW",
    "too_many": "ARRAY_LENGTH_TOO_LONG", "too_few": "ARRAY_LENGTH_TOO_SHORT",
    "read_only": "INVALID_VALUE", "pattern": "VALUE_REGEX_MISMATCH",
    "body": "EXPECTED_JSON_BODY",
}
_TYPE_CODES = {"string": "EXPECTED_STRING", "integer": "EXPECTED_INTEGER",
               "number": "EXPECTED_FLOAT", "boolean": "EXPECTED_BOOLEAN",
               "object": "EXPECTED_OBJECT", "array": "EXPECTED_ARRAY"}


def _new_id(length: int = 26) -> str:
    return "".join(secrets.choice(_ID_ALPHABET) for _ in range(length))


def _now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _iso_in(seconds: float) -> str:
    when = datetime.now(UTC) + timedelta(seconds=seconds)
    return when.isoformat(timespec="seconds").replace("+00:00", "Z")


def _err(code: str, detail: str, field: str | None = None,
         category: str = "INVALID_REQUEST_ERROR") -> dict[str, str]:
    error = {"category": category, "code": code, "detail": detail}
    if field:
        error["field"] = field
    return error


_METADATA_KEY = re.compile(r"[a-zA-Z0-9_-]{1,60}")


def _time(value: Any) -> datetime | None:
    """An RFC 3339 time, or None."""
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _map(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _within(moment: datetime | None, start: datetime | None, end: datetime | None) -> bool:
    return moment is not None and (start is None or moment >= start) and (
        end is None or moment <= end)


def _money_ok(money: Any) -> bool:
    return (isinstance(money, dict) and isinstance(money.get("amount"), int)
            and not isinstance(money.get("amount"), bool) and money["amount"] >= 0
            and isinstance(money.get("currency"), str) and len(money["currency"]) == 3
            and money["currency"].isupper())


def _field(path: tuple[str | int, ...]) -> str:
    """A field as Square names it: ``order.line_items[0].name``."""
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else part)
    return out


def _refusal(problem: Problem) -> dict[str, str]:
    """One problem as one of Square's ``errors``."""
    name = _field(problem.path)
    kind = problem.kind
    if kind == "type":
        expected = problem.expected.split("|")
        code = _TYPE_CODES.get(expected[0], "INCORRECT_TYPE") if len(expected) == 1 \
            else "INCORRECT_TYPE"
        return _err(code, f"Expected `{name}` to be {problem.expected}.", name)
    if kind == "unknown" and problem.location == "query":
        return _err("UNKNOWN_QUERY_PARAMETER", f"Unknown query parameter `{name}`.", name)
    details = {
        "unknown": f"Unrecognized field `{name}`.",
        "missing": f"Field `{name}` is required.",
        "enum": f"`{name}` must be one of {problem.expected}.",
        "too_long": f"`{name}` must be at most {problem.expected} characters long.",
        "too_short": f"`{name}` must be at least {problem.expected} characters long.",
        "too_large": f"`{name}` must be at most {problem.expected}.",
        "too_small": f"`{name}` must be at least {problem.expected}.",
        "too_many": f"`{name}` must have at most {problem.expected} elements.",
        "too_few": f"`{name}` must have at least {problem.expected} elements.",
        "read_only": f"`{name}` is read-only and cannot be set.",
        "pattern": f"`{name}` must match {problem.expected}.",
        "body": "The request body must be a JSON object.",
    }
    return _err(_PROBLEM_CODES[kind], details[kind], name or None)


@dataclass(frozen=True, slots=True)
class _ChangeMeta:
    """One stored inventory change: Square's answer for it, and how it is ordered."""

    change: dict[str, Any]
    location: str
    object_id: str
    occurred: datetime
    created: datetime


class SquareEmulator(Emulator):
    """Square, locally."""

    name = "square"
    default_account = MERCHANT_ID
    credential_kind = "access_token"
    #: Time a catalog write holds the seller's catalog lock (so overlapping writes collide).
    catalog_write_seconds = 0.005

    def __init__(self, settings: EmulatorSettings | None = None) -> None:
        super().__init__(settings)
        self._catalog_busy: set[str] = set()
        self._codes: dict[str, tuple[str, tuple[str, ...], str | None]] = {}
        self._pkce_refresh: set[str] = set()
        #: Inventory changes by id, with what ordering needs (the store keeps their JSON).
        self._change_meta: dict[str, _ChangeMeta] = {}
        #: Square's published description (None: not found, requests go unchecked).
        self.description: Description | None = find_description(DESCRIPTION, name="square")
        if self.description is None:
            log.info("emulator.description_missing", provider=self.name,
                        description=DESCRIPTION)
        self._locations: dict[str, dict[str, Any]] = {
            LOCATION_ID: {
                "id": LOCATION_ID, "name": "Emulated Box Office", "merchant_id": MERCHANT_ID,
                "status": "ACTIVE", "currency": "USD", "country": "US",
                "timezone": "America/New_York", "capabilities": ["CREDIT_CARD_PROCESSING"],
                "created_at": "2024-01-01T00:00:00Z", "type": "PHYSICAL",
            },
        }

    # --- base hooks ----------------------------------------------------------------------

    def provision(self, kind: str, rid: str, attrs: Mapping[str, Any]) -> dict[str, Any] | None:
        if kind != "location":
            return None
        location = {**self._locations[LOCATION_ID], "id": rid,
                    "name": str(attrs.get("name", "Box Office")),
                    "currency": str(attrs.get("currency", "USD"))}
        self._locations[rid] = location
        return location

    def _issue_default_token(self) -> Any:
        ttl = self.settings.access_token_ttl
        return self.tokens.issue_access(self.default_account, ttl if ttl is not None
                                        else ACCESS_TTL, prefix="EAAAemu")

    def default_account_facts(self) -> dict[str, str]:
        return {"merchant_id": MERCHANT_ID, "location_id": LOCATION_ID,
                "client_id": CLIENT_ID}

    def error_response(self, status: int, code: str, message: str) -> web.Response:
        category = _CATEGORIES.get(status, "API_ERROR" if status >= 500 else
                                   "INVALID_REQUEST_ERROR")
        square_code = {
            "unauthorized": "UNAUTHORIZED", "rate_limited": "RATE_LIMITED",
            "internal_error": "INTERNAL_SERVER_ERROR",
            "idempotency_key_reused": "IDEMPOTENCY_KEY_REUSED",
            "idempotency_key_in_use": "CONFLICT",
        }.get(code, code)
        return web.json_response({"errors": [_err(square_code, message, category=category)]},
                                 status=status)

    def rate_limited_response(self, retry_after: float) -> web.Response:
        # Square documents 429 RATE_LIMITED; whether it sends Retry-After is not documented,
        # so the emulator sends none and clients fall back to backoff.
        return self.error_response(429, "RATE_LIMITED", "Rate limit exceeded.")

    def rate_limit(self) -> tuple[float, float]:
        return (20.0, 40.0)

    async def check_request(self, request: web.Request) -> web.Response | None:
        """Refuse what Square refuses, as Square words it: every problem against
        ``api.json`` as 400 ``errors`` with ``field``; 404 ``NOT_FOUND`` for a path Square
        does not have."""
        if not self.settings.strict or self.description is None:
            return None
        try:
            problems = await check_request(self.description, request)
        except UnknownPath:
            if request.match_info.http_exception is None:
                return None  # emulated, not described there (an authorization page)
            return web.json_response({"errors": [_err(
                "NOT_FOUND", f"Resource not found: {request.method} {request.path}.")]},
                status=404)
        if not problems:
            return None
        return web.json_response({"errors": [_refusal(p) for p in problems]}, status=400)

    def is_public(self, request: web.Request) -> bool:
        return request.path in ("/oauth2/authorize", "/oauth2/token", "/oauth2/revoke")

    def on_reset(self) -> None:
        self._catalog_busy.clear()
        self._change_meta.clear()
        self._last_change_at = None

    def sign_webhook(self, body: bytes, url: str, timestamp: int) -> dict[str, str]:
        when = datetime.fromtimestamp(timestamp, UTC).isoformat().replace("+00:00", "Z")
        return {SIGNATURE_HEADER: sign(body, url, self.settings.webhook_secret),
                "square-initial-delivery-timestamp": when, "square-retry-number": "0"}

    def webhook_event(self, collection: str, record_id: str, change: str) -> bytes:
        record = self.collection(collection).get(record_id, {"id": record_id})
        if collection == "inventory":
            return self._inventory_event([record])
        if collection == "product":
            event_type = "catalog.version.updated"
            data: dict[str, Any] = {"type": "catalog_version", "id": str(uuid.uuid4()),
                                    "object": {"catalog_version": {"updated_at": _now_iso()}}}
        elif collection == "customer":
            event_type = f"customer.{change}"
            data = {"type": "customer", "id": record_id, "object": {"customer": record}}
        else:
            kind = "order_created" if change == "created" else "order_updated"
            event_type = "order.created" if change == "created" else "order.updated"
            data = {"type": kind, "id": record_id, "object": {kind: {
                "order_id": record_id, "location_id": record.get("location_id"),
                "state": record.get("state"), "version": record.get("version"),
                "created_at": record.get("created_at"), "updated_at": record.get("updated_at"),
            }}}
        event = {"merchant_id": MERCHANT_ID, "type": event_type, "event_id": str(uuid.uuid4()),
                 "created_at": _now_iso(), "data": data}
        return json.dumps(event, separators=(",", ":")).encode()

    def app(self) -> web.Application:
        app = super().app()
        audit_responses(app, self.description)
        return app

    def routes(self) -> list[web.RouteDef]:
        return [
            web.get("/oauth2/authorize", self.authorize),
            web.post("/oauth2/token", self.obtain_token),
            web.post("/oauth2/revoke", self.revoke_token),
            web.post("/oauth2/token/status", self.token_status),
            web.get("/v2/locations", self.list_locations),
            web.get("/v2/catalog/info", self.catalog_info),
            web.get("/v2/catalog/list", self.catalog_list),
            web.post("/v2/catalog/batch-upsert", self.catalog_batch_upsert),
            web.post("/v2/catalog/batch-delete", self.catalog_batch_delete),
            web.post("/v2/catalog/batch-retrieve", self.catalog_batch_retrieve),
            web.get("/v2/customers", self.list_customers),
            web.post("/v2/customers", self.create_customer),
            web.post("/v2/customers/bulk-create", self.bulk_create_customers),
            web.post("/v2/customers/bulk-update", self.bulk_update_customers),
            web.post("/v2/customers/search", self.search_customers),
            web.get("/v2/customers/{customer_id}", self.get_customer),
            web.put("/v2/customers/{customer_id}", self.update_customer),
            web.delete("/v2/customers/{customer_id}", self.delete_customer),
            web.post("/v2/orders", self.create_order),
            web.post("/v2/orders/search", self.search_orders),
            web.get("/v2/orders/{order_id}", self.get_order),
            web.post("/v2/payments", self.create_payment),
            web.post("/v2/inventory/changes/batch-create", self.inventory_batch_change),
            web.post("/v2/inventory/counts/batch-retrieve", self.inventory_batch_counts),
            web.post("/v2/inventory/changes/batch-retrieve", self.inventory_batch_changes),
            web.post("/_emulator/square/pos-sale", self._control_pos_sale),
        ]

    # --- helpers -------------------------------------------------------------------------

    def _errors(self, status: int, *errors: dict[str, str]) -> web.Response:
        return web.json_response({"errors": list(errors)}, status=status)

    async def _body(self, request: web.Request) -> dict[str, Any] | web.Response:
        try:
            body = await request.json()
        except (ValueError, UnicodeDecodeError):
            return self._errors(400, _err("EXPECTED_JSON_BODY", "The body is not valid JSON."))
        if not isinstance(body, dict):
            return self._errors(400, _err("EXPECTED_OBJECT", "The body must be an object."))
        return body

    async def _keyed_body(self, request: web.Request, maximum: int, *,
                          required: bool) -> dict[str, Any] | web.Response:
        """The JSON body of a call that takes an ``idempotency_key`` of at most ``maximum``
        characters, or the error Square answers for the body or the key."""
        body = await self._body(request)
        if isinstance(body, web.Response):
            return body
        bad = self._key_check(body.get("idempotency_key"), maximum, required=required)
        return body if bad is None else bad

    def _key_check(self, key: Any, maximum: int, *, required: bool) -> web.Response | None:
        if key is None and not required:
            return None
        if not isinstance(key, str) or not key:
            return self._errors(400, _err("MISSING_REQUIRED_PARAMETER",
                                          "Field must be set", "idempotency_key"))
        if len(key) > maximum:
            return self._errors(400, _err(
                "VALUE_TOO_LONG", f"Field must not be greater than {maximum} length",
                "idempotency_key"))
        return None

    # --- OAuth ---------------------------------------------------------------------------

    async def authorize(self, request: web.Request) -> web.Response:
        q = request.query
        if q.get("client_id") != CLIENT_ID:
            return self._errors(400, _err("UNAUTHORIZED", "Unknown client_id.",
                                          category="AUTHENTICATION_ERROR"))
        code = "sq0cgp-" + secrets.token_urlsafe(16)
        scopes = tuple(q.get("scope", "").replace("+", " ").split())
        self._codes[code] = (MERCHANT_ID, scopes, q.get("code_challenge"))
        params = {"code": code, "response_type": "code"}
        if "state" in q:
            params["state"] = q["state"]
        redirect = q.get("redirect_uri")
        if redirect:
            raise web.HTTPFound(f"{redirect}?{urlencode(params)}")
        return web.json_response(params)

    def _token_json(self, access: Any, refresh: Any, *, pkce: bool) -> dict[str, Any]:
        assert access.expires_at is not None
        body: dict[str, Any] = {
            "access_token": access.value, "token_type": "bearer",
            "expires_at": datetime.fromtimestamp(access.expires_at, UTC).isoformat(
                timespec="seconds").replace("+00:00", "Z"),
            "merchant_id": access.account, "refresh_token": refresh.value, "short_lived": False,
        }
        if pkce and refresh.expires_at is not None:
            body["refresh_token_expires_at"] = datetime.fromtimestamp(
                refresh.expires_at, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
        return body

    async def obtain_token(self, request: web.Request) -> web.Response:
        body = await self._body(request)
        if isinstance(body, web.Response):
            return body
        unauthorized = self._errors(401, _err("UNAUTHORIZED", "Invalid client credentials or "
                                              "grant.", category="AUTHENTICATION_ERROR"))
        if body.get("client_id") != CLIENT_ID:
            return unauthorized
        secret = body.get("client_secret")
        pkce = secret is None and bool(body.get("code_verifier") or
                                       body.get("grant_type") == "refresh_token")
        if secret is not None and secret != CLIENT_SECRET:
            return unauthorized
        ttl = self.settings.access_token_ttl or ACCESS_TTL
        grant = body.get("grant_type")
        if grant == "authorization_code":
            entry = self._codes.pop(str(body.get("code")), None)
            if entry is None:
                return unauthorized
            merchant, scopes, challenge = entry
            if secret is None:
                verifier = body.get("code_verifier")
                if not challenge or not isinstance(verifier, str):
                    return unauthorized
                digest = base64.urlsafe_b64encode(
                    hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
                if digest != challenge:
                    return unauthorized
            access = self.tokens.issue_access(merchant, ttl, scopes=scopes, prefix="EAAAemu")
            refresh = self.tokens.issue_refresh(
                merchant, PKCE_REFRESH_TTL if pkce else None, scopes=scopes, prefix="EQAAemu")
            if pkce:
                self._pkce_refresh.add(refresh.value)
            return web.json_response(self._token_json(access, refresh, pkce=pkce))
        if grant == "refresh_token":
            value = str(body.get("refresh_token"))
            rotating = value in self._pkce_refresh
            pair = self.tokens.refresh(value, access_ttl=ttl, rotate=rotating,
                                       refresh_ttl=PKCE_REFRESH_TTL)
            if pair is None:
                return unauthorized
            access, refresh = pair
            if rotating:
                self._pkce_refresh.discard(value)
                self._pkce_refresh.add(refresh.value)
            return web.json_response(self._token_json(access, refresh, pkce=rotating))
        return self._errors(400, _err("INVALID_VALUE", "Unsupported grant_type.", "grant_type"))

    async def revoke_token(self, request: web.Request) -> web.Response:
        if request.headers.get("Authorization", "") != f"Client {CLIENT_SECRET}":
            return self._errors(401, _err("UNAUTHORIZED", "Invalid client secret.",
                                          category="AUTHENTICATION_ERROR"))
        body = await self._body(request)
        if isinstance(body, web.Response):
            return body
        merchant = body.get("merchant_id")
        token = body.get("access_token")
        if isinstance(token, str):
            found = self.tokens.lookup(token)
            merchant = found.account if found else None
        if not isinstance(merchant, str):
            return self._errors(404, _err("NOT_FOUND", "No such token or merchant."))
        self.tokens.revoke_account(merchant)
        return web.json_response({"success": True})

    async def token_status(self, request: web.Request) -> web.Response:
        header = request.headers.get("Authorization", "")
        token = self.tokens.lookup(header.partition(" ")[2].strip())
        if token is None:
            return self.unauthorized_response()
        expires = (datetime.fromtimestamp(token.expires_at, UTC).isoformat(timespec="seconds")
                   .replace("+00:00", "Z") if token.expires_at else None)
        body: dict[str, Any] = {"scopes": list(token.scopes), "client_id": CLIENT_ID,
                                "merchant_id": token.account}
        if expires:
            body["expires_at"] = expires
        return web.json_response(body)

    # --- locations and catalog -----------------------------------------------------------

    async def list_locations(self, request: web.Request) -> web.Response:
        return web.json_response({"locations": list(self._locations.values())})

    async def catalog_info(self, request: web.Request) -> web.Response:
        return web.json_response({"limits": {
            "batch_upsert_max_objects_per_batch": MAX_BATCH_OBJECTS,
            "batch_upsert_max_total_objects": MAX_REQUEST_OBJECTS,
            "batch_retrieve_max_object_ids": 1000, "search_max_page_limit": 1000,
            "batch_delete_max_object_ids": 200,
        }})

    async def catalog_list(self, request: web.Request) -> web.Response:
        items = list(self.collection("product").values())
        return self._page(items, request.query.get("cursor"), 100, "objects")

    def _page(self, items: list[dict[str, Any]], cursor: str | None, limit: int,
              key: str) -> web.Response:
        try:
            start = int(base64.urlsafe_b64decode((cursor or "MA==").encode())) if cursor else 0
        except (ValueError, TypeError):
            return self._errors(400, _err("INVALID_CURSOR", "The cursor is not valid.",
                                          "cursor"))
        page = items[start:start + limit]
        body: dict[str, Any] = {key: page} if page else {}
        if start + limit < len(items):
            body["cursor"] = base64.urlsafe_b64encode(str(start + limit).encode()).decode()
        return web.json_response(body)

    @staticmethod
    def _count_objects(objects: list[Any]) -> int:
        total = 0
        for obj in objects:
            total += 1
            if isinstance(obj, dict):
                data = obj.get("item_data")
                if isinstance(data, dict) and isinstance(data.get("variations"), list):
                    total += len(data["variations"])
        return total

    def _check_item(self, obj: Any) -> dict[str, str] | None:
        if not isinstance(obj, dict) or not isinstance(obj.get("id"), str):
            return _err("MISSING_REQUIRED_PARAMETER", "Each object needs an id.", "id")
        if obj.get("type") != "ITEM":
            return _err("INVALID_VALUE", f"Object {obj['id']}: only ITEM is emulated.", "type")
        data = obj.get("item_data")
        if not isinstance(data, dict) or not isinstance(data.get("name"), str) or not data[
                "name"].strip():
            return _err("MISSING_REQUIRED_PARAMETER",
                        f"Object {obj['id']}: item_data.name is required.", "item_data.name")
        if len(data["name"]) > 512:
            return _err("VALUE_TOO_LONG", f"Object {obj['id']}: item_data.name is too long.",
                        "item_data.name")
        existing = self.collection("product").get(obj["id"])
        if not obj["id"].startswith("#"):
            if existing is None:
                return _err("NOT_FOUND", f"Object {obj['id']} does not exist.", "id")
            if "version" in obj and obj["version"] != existing.get("version"):
                return _err("CONFLICT",
                            f"Object version does not match for object: {obj['id']}",
                            "version")
        for variation in data.get("variations") or []:
            vdata = variation.get("item_variation_data") if isinstance(variation, dict) else None
            if not isinstance(vdata, dict) or variation.get("type") != "ITEM_VARIATION":
                return _err("INVALID_VALUE", f"Object {obj['id']}: bad variation.",
                            "item_data.variations")
            if vdata.get("pricing_type") == "FIXED_PRICING" and not _money_ok(
                    vdata.get("price_money")):
                return _err("INVALID_VALUE", f"Object {obj['id']}: price_money needs a "
                            "non-negative integer amount and an upper-case ISO currency.",
                            "item_variation_data.price_money")
        return None

    async def catalog_batch_upsert(self, request: web.Request) -> web.Response:
        body = await self._keyed_body(request, CATALOG_IDEMPOTENCY_MAX, required=True)
        if isinstance(body, web.Response):
            return body
        batches = body.get("batches")
        if not isinstance(batches, list) or not batches:
            return self._errors(400, _err("ARRAY_EMPTY", "batches must not be empty",
                                          "batches"))
        counts = [self._count_objects(b.get("objects") or []) if isinstance(b, dict) else 0
                  for b in batches]
        # The request log counts records (top-level objects), as for every other batch call.
        request[BATCH_SIZE] = sum(len(b.get("objects") or []) if isinstance(b, dict) else 0
                                  for b in batches)
        for index, count in enumerate(counts):
            if count > MAX_BATCH_OBJECTS:
                return self._errors(400, _err(
                    "ARRAY_LENGTH_TOO_LONG", f"A batch may hold at most {MAX_BATCH_OBJECTS} "
                    f"objects; batch {index} has {count}.", f"batches[{index}].objects"))
        if sum(counts) > MAX_REQUEST_OBJECTS:
            return self._errors(400, _err(
                "ARRAY_LENGTH_TOO_LONG", f"A request may hold at most {MAX_REQUEST_OBJECTS} "
                f"objects; this one has {sum(counts)}.", "batches"))
        merchant = self.account_of(request)
        if merchant in self._catalog_busy:
            # Square processes one catalog write per seller at a time.
            return self.rate_limited_response(0.0)

        async def handle() -> web.Response:
            self._catalog_busy.add(merchant)
            try:
                await asyncio.sleep(self.catalog_write_seconds)
                return self._apply_batches(batches)
            finally:
                self._catalog_busy.discard(merchant)

        return await self.idempotent(request, body["idempotency_key"], body, handle)

    def _apply_batches(self, batches: list[Any]) -> web.Response:
        objects: list[dict[str, Any]] = []
        mappings: list[dict[str, str]] = []
        errors: list[dict[str, str]] = []
        stamp = _now_iso()
        for batch in batches:
            items = batch.get("objects") if isinstance(batch, dict) else None
            if not isinstance(items, list) or not items:
                errors.append(_err("ARRAY_EMPTY", "A batch needs objects.", "objects"))
                continue
            problems = [p for p in (self._check_item(o) for o in items) if p is not None]
            if problems:
                errors.extend(problems)  # all-or-nothing: nothing in this batch is applied
                continue
            version = time.time_ns() // 1000
            for obj in items:
                stored, new_maps = self._store_item(obj, version, stamp)
                objects.append(stored)
                mappings.extend(new_maps)
        if not objects and errors:
            return self._errors(400, *errors)
        body: dict[str, Any] = {"objects": objects, "id_mappings": mappings, "updated_at": stamp}
        if errors:
            body["errors"] = errors
        return web.json_response(body)

    def _store_item(self, obj: dict[str, Any], version: int,
                    stamp: str) -> tuple[dict[str, Any], list[dict[str, str]]]:
        maps: list[dict[str, str]] = []
        item = json.loads(json.dumps(obj))
        created = item["id"].startswith("#")
        if created:
            real = _new_id()
            maps.append({"client_object_id": item["id"], "object_id": real})
            item["id"] = real
        item.update({"version": version, "updated_at": stamp, "is_deleted": False,
                     "present_at_all_locations": item.get("present_at_all_locations", True)})
        for variation in item["item_data"].get("variations") or []:
            if str(variation.get("id", "#")).startswith("#"):
                real = _new_id()
                maps.append({"client_object_id": str(variation.get("id", "#")),
                             "object_id": real})
                variation["id"] = real
            variation.update({"version": version, "updated_at": stamp, "is_deleted": False,
                              "present_at_all_locations": True})
            variation["item_variation_data"]["item_id"] = item["id"]
        self.put("product", item["id"], item, change="created" if created else "updated")
        return item, maps

    async def catalog_batch_retrieve(self, request: web.Request) -> web.Response:
        body = await self._body(request)
        if isinstance(body, web.Response):
            return body
        ids = body.get("object_ids")
        if not isinstance(ids, list) or not ids:
            return self._errors(400, _err("ARRAY_EMPTY", "object_ids must not be empty",
                                          "object_ids"))
        if len(ids) > 1000:
            return self._errors(400, _err("ARRAY_LENGTH_TOO_LONG", "At most 1000 object_ids.",
                                          "object_ids"))
        products = self.collection("product")
        found = [products[str(i)] for i in ids if str(i) in products]
        return web.json_response({"objects": found} if found else {})

    async def catalog_batch_delete(self, request: web.Request) -> web.Response:
        body = await self._body(request)
        if isinstance(body, web.Response):
            return body
        ids = body.get("object_ids")
        if not isinstance(ids, list) or not ids:
            return self._errors(400, _err("ARRAY_EMPTY", "object_ids must not be empty",
                                          "object_ids"))
        deleted: list[str] = []
        products = self.collection("product")
        for object_id in ids:
            item = products.pop(str(object_id), None)
            if item is not None:
                deleted.append(item["id"])
                deleted.extend(v["id"] for v in item["item_data"].get("variations") or [])
                self.notify_change("product", item["id"], "deleted")
        return web.json_response({"deleted_object_ids": deleted, "deleted_at": _now_iso()})

    # --- customers -----------------------------------------------------------------------

    _CUSTOMER_FIELDS = ("given_name", "family_name", "company_name", "nickname",
                        "email_address", "phone_number", "reference_id", "note", "birthday",
                        "address")
    _LIMITS: Mapping[str, int] = {"given_name": 300, "family_name": 300, "company_name": 500,
                                  "nickname": 100, "email_address": 254, "reference_id": 100}

    def _customer_problem(self, data: Any, *, creating: bool) -> dict[str, str] | None:
        if not isinstance(data, dict):
            return _err("EXPECTED_OBJECT", "A customer must be an object.")
        for field, limit in self._LIMITS.items():
            value = data.get(field)
            if value is not None and (not isinstance(value, str) or len(value) > limit):
                return _err("VALUE_TOO_LONG" if isinstance(value, str) else "EXPECTED_STRING",
                            f"Field must not be greater than {limit} length", field)
        email = data.get("email_address")
        if isinstance(email, str) and email and ("@" not in email or " " in email.strip()
                                                 or email.startswith("@")
                                                 or email.endswith("@")):
            return _err("INVALID_EMAIL_ADDRESS", "Expected email_address to be a valid email "
                        "address", "email_address")
        if creating and not any(data.get(f) for f in ("given_name", "family_name",
                                                      "company_name", "email_address",
                                                      "phone_number")):
            return _err("MISSING_REQUIRED_PARAMETER", "At least one of given_name, "
                        "family_name, company_name, email_address or phone_number is required.")
        return None

    def _new_customer(self, data: Mapping[str, Any]) -> dict[str, Any]:
        stamp = _now_iso()
        customer_id = _new_id()
        customer: dict[str, Any] = {"id": customer_id, "created_at": stamp, "updated_at": stamp,
                    "preferences": {"email_unsubscribed": False},
                    "creation_source": "THIRD_PARTY", "version": 0}
        customer.update({k: data[k] for k in self._CUSTOMER_FIELDS if data.get(k) is not None})
        self.put("customer", customer_id, customer, change="created")
        return customer

    def _update_customer(self, customer_id: str,
                         data: Mapping[str, Any]) -> tuple[int, dict[str, Any]]:
        customer = self.collection("customer").get(customer_id)
        if customer is None:
            return 404, {"errors": [_err("NOT_FOUND", f"Customer with ID `{customer_id}` not "
                                         "found.")]}
        problem = self._customer_problem(data, creating=False)
        if problem is not None:
            return 400, {"errors": [problem]}
        if "version" in data and data["version"] != customer["version"]:
            return 409, {"errors": [_err("CONFLICT", "Version mismatch: the customer was "
                                         "changed since it was read.", "version")]}
        for key in self._CUSTOMER_FIELDS:
            if key in data:
                if data[key] is None:
                    customer.pop(key, None)
                else:
                    customer[key] = data[key]
        customer["version"] += 1
        customer["updated_at"] = _now_iso()
        self.notify_change("customer", customer_id, "updated")
        return 200, {"customer": customer}

    async def create_customer(self, request: web.Request) -> web.Response:
        body = await self._body(request)
        if isinstance(body, web.Response):
            return body
        problem = self._customer_problem(body, creating=True)
        if problem is not None:
            return self._errors(400, problem)

        async def handle() -> web.Response:
            return web.json_response({"customer": self._new_customer(body)})

        key = body.get("idempotency_key")
        payload = {k: v for k, v in body.items() if k != "idempotency_key"}
        return await self.idempotent(request, key if isinstance(key, str) else None, payload,
                                     handle)

    async def _bulk_customers(self, request: web.Request) -> dict[str, Any] | web.Response:
        """The ``customers`` map of a bulk call, or the error Square answers for it."""
        body = await self._body(request)
        if isinstance(body, web.Response):
            return body
        entries = body.get("customers")
        if not isinstance(entries, dict):
            return self._errors(400, _err("EXPECTED_MAP", "customers must be a map",
                                          "customers"))
        request[BATCH_SIZE] = len(entries)
        if not 1 <= len(entries) <= MAX_BULK_CUSTOMERS:
            return self._errors(400, _err(
                "TOO_MANY_MAP_ENTRIES" if entries else "ARRAY_EMPTY",
                f"customers must have between 1 and {MAX_BULK_CUSTOMERS} entries",
                "customers"))
        return entries

    async def bulk_create_customers(self, request: web.Request) -> web.Response:
        entries = await self._bulk_customers(request)
        if isinstance(entries, web.Response):
            return entries
        responses: dict[str, Any] = {}
        for key, data in entries.items():
            responses[key] = await self._bulk_create_one(request, key, data)
        return web.json_response({"responses": responses})

    async def _bulk_create_one(self, request: web.Request, key: str, data: Any) -> Any:
        problem = self._customer_problem(data, creating=True)
        if problem is not None:
            return {"errors": [problem]}

        async def handle() -> web.Response:
            return web.json_response({"customer": self._new_customer(data)})

        # Each entry is idempotent on its own key (the map key).
        response = await self.idempotent(request, key, data, handle)
        raw = response.body if isinstance(response.body, bytes) else b"{}"
        return json.loads(raw)

    async def bulk_update_customers(self, request: web.Request) -> web.Response:
        entries = await self._bulk_customers(request)
        if isinstance(entries, web.Response):
            return entries
        responses: dict[str, Any] = {}
        for customer_id, data in entries.items():
            if not isinstance(data, dict):
                responses[customer_id] = {"errors": [_err("EXPECTED_OBJECT", "bad entry")]}
                continue
            _, result = self._update_customer(customer_id, data)
            responses[customer_id] = result
        return web.json_response({"responses": responses})

    async def search_customers(self, request: web.Request) -> web.Response:
        body = await self._body(request)
        if isinstance(body, web.Response):
            return body
        query = body.get("query") or {}
        flt = query.get("filter") or {} if isinstance(query, dict) else {}
        limit = body.get("limit", 100)
        if not isinstance(limit, int) or not 1 <= limit <= 100:
            return self._errors(400, _err("VALUE_TOO_HIGH", "limit must be 1-100", "limit"))
        found = list(self.collection("customer").values())
        email = (flt.get("email_address") or {}) if isinstance(flt, dict) else {}
        if isinstance(email, dict) and isinstance(email.get("exact"), str):
            wanted = email["exact"].lower()
            found = [c for c in found if str(c.get("email_address", "")).lower() == wanted]
        if isinstance(email, dict) and isinstance(email.get("fuzzy"), str):
            part = email["fuzzy"].lower()
            found = [c for c in found if part in str(c.get("email_address", "")).lower()]
        ref = (flt.get("reference_id") or {}) if isinstance(flt, dict) else {}
        if isinstance(ref, dict) and isinstance(ref.get("exact"), str):
            found = [c for c in found if c.get("reference_id") == ref["exact"]]
        found.sort(key=lambda c: (c["created_at"], c["id"]))
        return self._page(found, body.get("cursor"), limit, "customers")

    async def list_customers(self, request: web.Request) -> web.Response:
        try:
            limit = int(request.query.get("limit", "100"))
        except ValueError:
            limit = 0
        if not 1 <= limit <= 100:
            return self._errors(400, _err("VALUE_TOO_HIGH", "limit must be 1-100", "limit"))
        found = sorted(self.collection("customer").values(),
                       key=lambda c: (c["created_at"], c["id"]))
        return self._page(found, request.query.get("cursor"), limit, "customers")

    async def get_customer(self, request: web.Request) -> web.Response:
        customer = self.collection("customer").get(request.match_info["customer_id"])
        if customer is None:
            return self._errors(404, _err("NOT_FOUND", "Customer not found."))
        return web.json_response({"customer": customer})

    async def update_customer(self, request: web.Request) -> web.Response:
        body = await self._body(request)
        if isinstance(body, web.Response):
            return body
        status, result = self._update_customer(request.match_info["customer_id"], body)
        return web.json_response(result, status=status)

    async def delete_customer(self, request: web.Request) -> web.Response:
        customer = self.collection("customer").pop(request.match_info["customer_id"], None)
        if customer is None:
            return self._errors(404, _err("NOT_FOUND", "Customer not found."))
        self.notify_change("customer", customer["id"], "deleted")
        return web.json_response({})

    # --- orders and payments -------------------------------------------------------------

    def _order_problem(self, order: Any) -> dict[str, str] | None:
        if not isinstance(order, dict):
            return _err("MISSING_REQUIRED_PARAMETER", "order is required", "order")
        location = self._locations.get(str(order.get("location_id")))
        if location is None:
            return _err("NOT_FOUND", "Location not found.", "order.location_id")
        lines = order.get("line_items")
        if not isinstance(lines, list) or not lines:
            return _err("ARRAY_EMPTY", "An order needs line items.", "order.line_items")
        for i, line in enumerate(lines):
            if not isinstance(line, dict) or not line.get("name"):
                return _err("MISSING_REQUIRED_PARAMETER", "A line item needs a name.",
                            f"order.line_items[{i}].name")
            quantity = line.get("quantity")
            if not isinstance(quantity, str) or not quantity.isdigit() or int(quantity) < 1:
                return _err("INVALID_VALUE", "quantity must be a positive integer string",
                            f"order.line_items[{i}].quantity")
            if not _money_ok(line.get("base_price_money")):
                return _err("INVALID_VALUE", "base_price_money is invalid",
                            f"order.line_items[{i}].base_price_money")
            if line["base_price_money"]["currency"] != location["currency"]:
                return _err("INVALID_VALUE", "The line item currency must match the "
                            f"location currency {location['currency']}.",
                            f"order.line_items[{i}].base_price_money.currency")
        ref = order.get("reference_id")
        if ref is not None and (not isinstance(ref, str) or len(ref) > 40):
            return _err("VALUE_TOO_LONG", "reference_id must be at most 40 characters",
                        "order.reference_id")
        customer = order.get("customer_id")
        if customer is not None and customer not in self.collection("customer"):
            return _err("NOT_FOUND", "Customer not found.", "order.customer_id")
        metadata = order.get("metadata")
        if metadata is not None:
            if not isinstance(metadata, dict) or len(metadata) > 10:
                return _err("INVALID_VALUE", "metadata is a map of at most 10 entries",
                            "order.metadata")
            for key, value in metadata.items():
                if not _METADATA_KEY.fullmatch(str(key)) or not isinstance(value, str) or \
                        not 0 < len(value) <= 255:
                    return _err("INVALID_VALUE", f"metadata entry {key!r}: keys are up to 60 "
                                "of [a-zA-Z0-9_-], values 1-255 characters",
                                f"order.metadata.{key}")
        return None

    async def search_orders(self, request: web.Request) -> web.Response:
        body = await self._body(request)
        if isinstance(body, web.Response):
            return body
        locations = body.get("location_ids")
        if not isinstance(locations, list) or not 1 <= len(locations) <= 10:
            return self._errors(400, _err("INVALID_VALUE", "location_ids needs 1 to 10 "
                                          "location ids", "location_ids"))
        if any(loc not in self._locations for loc in locations):
            return self._errors(400, _err("NOT_FOUND", "Location not found.", "location_ids"))
        limit = body.get("limit", 500)
        if not isinstance(limit, int) or not 1 <= limit <= 1000:
            return self._errors(400, _err("VALUE_TOO_HIGH", "limit must be 1-1000", "limit"))
        query = _map(body.get("query"))
        flt, sort = _map(query.get("filter")), _map(query.get("sort"))
        field = str(sort.get("sort_field") or "CREATED_AT")
        if field not in ("CREATED_AT", "UPDATED_AT", "CLOSED_AT"):
            return self._errors(400, _err("INVALID_ENUM_VALUE", "sort_field is CREATED_AT, "
                                          "UPDATED_AT or CLOSED_AT", "query.sort.sort_field"))
        found = [o for o in self.collection("transaction").values()
                 if o["location_id"] in locations]
        states = _map(flt.get("state_filter")).get("states")
        if states is not None:
            found = [o for o in found if o["state"] in states]
        customers = _map(flt.get("customer_filter")).get("customer_ids")
        if customers is not None:
            found = [o for o in found if o.get("customer_id") in customers]
        for name, ranged in _map(flt.get("date_time_filter")).items():
            if name.upper() != field:
                return self._errors(400, _err(
                    "INVALID_VALUE", f"A {name} filter needs sort_field {name.upper()}.",
                    "query.sort.sort_field"))
            start, end = _time(_map(ranged).get("start_at")), _time(_map(ranged).get("end_at"))
            found = [o for o in found if _within(_time(o.get(name)), start, end)]
        key = field.lower()
        found.sort(key=lambda o: (o.get(key) or "", o["id"]),
                   reverse=sort.get("sort_order", "DESC") != "ASC")
        return self._page(found, body.get("cursor"), limit, "orders")

    async def create_order(self, request: web.Request) -> web.Response:
        body = await self._keyed_body(request, ORDER_IDEMPOTENCY_MAX, required=False)
        if isinstance(body, web.Response):
            return body
        problem = self._order_problem(body.get("order"))
        if problem is not None:
            return self._errors(400, problem)

        async def handle() -> web.Response:
            return web.json_response({"order": self._new_order(body["order"])})

        key = body.get("idempotency_key")
        return await self.idempotent(request, key if isinstance(key, str) else None, body,
                                     handle)

    def _new_order(self, spec: dict[str, Any]) -> dict[str, Any]:
        currency = self._locations[spec["location_id"]]["currency"]
        zero = {"amount": 0, "currency": currency}
        lines = []
        total = 0
        for line in spec["line_items"]:
            gross = line["base_price_money"]["amount"] * int(line["quantity"])
            total += gross
            money = {"amount": gross, "currency": currency}
            lines.append({
                "uid": _new_id(22), "name": line["name"], "quantity": line["quantity"],
                "item_type": "ITEM", "base_price_money": line["base_price_money"],
                "variation_total_price_money": money, "gross_sales_money": money,
                "total_tax_money": zero, "total_discount_money": zero, "total_money": money,
                **({"note": line["note"]} if line.get("note") else {}),
            })
        stamp = _now_iso()
        order = {
            "id": _new_id(), "location_id": spec["location_id"], "line_items": lines,
            "state": "OPEN", "version": 1, "created_at": stamp, "updated_at": stamp,
            "total_money": {"amount": total, "currency": currency},
            "total_tax_money": zero, "total_discount_money": zero, "total_tip_money": zero,
            "total_service_charge_money": zero,
            "net_amount_due_money": {"amount": total, "currency": currency},
            "source": {"name": "syncd"},
        }
        for key in ("reference_id", "customer_id", "ticket_name", "metadata"):
            if spec.get(key):
                order[key] = spec[key]
        self.put("transaction", order["id"], order, change="created")
        return order

    async def get_order(self, request: web.Request) -> web.Response:
        order = self.collection("transaction").get(request.match_info["order_id"])
        if order is None:
            return self._errors(404, _err("NOT_FOUND", "Order not found."))
        return web.json_response({"order": order})

    async def create_payment(self, request: web.Request) -> web.Response:
        body = await self._keyed_body(request, PAYMENT_IDEMPOTENCY_MAX, required=True)
        if isinstance(body, web.Response):
            return body
        if body.get("source_id") != "EXTERNAL":
            return self._errors(400, _err("UNSUPPORTED_SOURCE_TYPE", "The emulator takes "
                                          "EXTERNAL payments only.", "source_id"))
        details = body.get("external_details")
        if not isinstance(details, dict) or not details.get("type") or not details.get(
                "source"):
            return self._errors(400, _err("MISSING_REQUIRED_PARAMETER", "external_details "
                                          "needs type and source", "external_details"))
        if not _money_ok(body.get("amount_money")):
            return self._errors(400, _err("INVALID_VALUE", "amount_money is invalid",
                                          "amount_money"))

        async def handle() -> web.Response:
            return self._pay(body)

        return await self.idempotent(request, body["idempotency_key"], body, handle)

    def _pay(self, body: dict[str, Any]) -> web.Response:
        order = self.collection("transaction").get(str(body.get("order_id")))
        if body.get("order_id") is not None and order is None:
            return self._errors(404, _err("NOT_FOUND", "Order not found.", "order_id"))
        amount = body["amount_money"]
        if order is not None and amount != order["net_amount_due_money"]:
            return self._errors(400, _err("PAYMENT_AMOUNT_MISMATCH", "The payment amount "
                                          "does not match the amount due.", "amount_money",
                                          category="PAYMENT_METHOD_ERROR"))
        stamp = _now_iso()
        payment = {
            "id": _new_id(), "created_at": stamp, "updated_at": stamp,
            "amount_money": amount, "total_money": amount, "status": "COMPLETED",
            "source_type": "EXTERNAL", "external_details": body["external_details"],
            "location_id": order["location_id"] if order else LOCATION_ID,
            "version_token": secrets.token_urlsafe(12),
        }
        for key in ("order_id", "reference_id", "note"):
            if body.get(key):
                payment[key] = body[key]
        self.put("payment", payment["id"], payment)
        if order is not None:
            order["tenders"] = [{"id": payment["id"], "location_id": order["location_id"],
                                 "amount_money": amount, "type": "OTHER",
                                 "payment_id": payment["id"], "created_at": stamp}]
            order["net_amount_due_money"] = {"amount": 0, "currency": amount["currency"]}
            order["state"] = "COMPLETED"
            order["version"] += 1
            order["updated_at"] = stamp
            order["closed_at"] = stamp
            self.notify_change("transaction", order["id"], "updated")
        return web.json_response({"payment": payment})

    # --- inventory -----------------------------------------------------------------------

    #: Adjustments the Inventory API may make (from state, to state). The read-only states
    #: (api.json InventoryState: CUSTOM, RETURNED_BY_CUSTOMER, RESERVED_FOR_SALE, SOLD_ONLINE,
    #: ORDERED_FROM_VENDOR, RECEIVED_FROM_VENDOR, IN_TRANSIT) are refused; of the others the
    #: emulator models the moves into and out of IN_STOCK.
    _TRANSITIONS = frozenset({("NONE", "IN_STOCK"), ("UNLINKED_RETURN", "IN_STOCK"),
                              ("WASTE", "IN_STOCK"), ("IN_STOCK", "SOLD"),
                              ("IN_STOCK", "WASTE"), ("IN_STOCK", "NONE")})
    _READ_ONLY_STATES = frozenset({"CUSTOM", "RETURNED_BY_CUSTOMER", "RESERVED_FOR_SALE",
                                   "SOLD_ONLINE", "ORDERED_FROM_VENDOR",
                                   "RECEIVED_FROM_VENDOR", "IN_TRANSIT", "IN_TRANSIT_TO"})
    _last_change_at: datetime | None = None

    def _variation(self, object_id: str) -> dict[str, Any] | None:
        """The catalog ITEM_VARIATION with this id, or None."""
        for item in self.collection("product").values():
            for variation in item.get("item_data", {}).get("variations") or []:
                if variation.get("id") == object_id:
                    return variation  # type: ignore[no-any-return]
        return None

    def _change_stamp(self) -> datetime:
        """When Square received a change: strictly later than the previous one, so the
        changes of one seller are totally ordered by ``created_at``."""
        now = datetime.now(UTC)
        now = now.replace(microsecond=now.microsecond // 1000 * 1000)
        if self._last_change_at is not None and now <= self._last_change_at:
            now = self._last_change_at + timedelta(milliseconds=1)
        self._last_change_at = now
        return now

    @staticmethod
    def _stamp(moment: datetime) -> str:
        return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")

    @staticmethod
    def _quantity(value: Any) -> Decimal | None:
        """A Square quantity: a decimal string with at most five digits after the point."""
        if not isinstance(value, str) or not re.fullmatch(r"-?\d{1,20}(\.\d{1,5})?", value):
            return None
        try:
            return Decimal(value)
        except InvalidOperation:
            return None

    @staticmethod
    def _decimal_text(value: Decimal) -> str:
        text = format(value.normalize(), "f")
        return "0" if text in ("-0", "") else text

    def _inventory_problems(self, index: int, change: Any, now: datetime) -> list[dict[str, str]]:
        """What Square refuses in ``changes[index]`` (the description checked shapes)."""
        at = f"changes[{index}]"
        if not isinstance(change, dict):
            return [_err("EXPECTED_OBJECT", "A change must be an object.", at)]
        kind = change.get("type")
        if kind is None:
            return [_err("MISSING_REQUIRED_PARAMETER", "Field `type` is required.",
                         f"{at}.type")]
        if kind == "TRANSFER":
            return [_err("INSUFFICIENT_PERMISSIONS", "Transfers need an active Retail Plus "
                         "subscription.", f"{at}.type", category="AUTHENTICATION_ERROR")]
        name = "adjustment" if kind == "ADJUSTMENT" else "physical_count"
        other = "physical_count" if kind == "ADJUSTMENT" else "adjustment"
        if change.get(other) is not None:
            return [_err("CONFLICTING_PARAMETERS", f"A {kind} change sets `{name}`, not "
                         f"`{other}`.", f"{at}.{other}")]
        body = change.get(name)
        if not isinstance(body, dict):
            return [_err("MISSING_REQUIRED_PARAMETER", f"Field `{name}` is required for a "
                         f"{kind} change.", f"{at}.{name}")]
        at = f"{at}.{name}"
        problems: list[dict[str, str]] = []
        for field in ("catalog_object_id", "location_id", "quantity", "occurred_at"):
            if not body.get(field):
                problems.append(_err("MISSING_REQUIRED_PARAMETER",
                                     f"Field `{field}` is required.", f"{at}.{field}"))
        object_id = body.get("catalog_object_id")
        if object_id and self._variation(str(object_id)) is None:
            problems.append(_err("NOT_FOUND", f"Catalog object `{object_id}` is not an item "
                                 "variation of this seller.", f"{at}.catalog_object_id"))
        object_type = body.get("catalog_object_type")
        if object_type is not None and object_type != "ITEM_VARIATION":
            problems.append(_err("INVALID_VALUE", "The Inventory API sets counts of "
                                 "ITEM_VARIATION objects only.", f"{at}.catalog_object_type"))
        location = body.get("location_id")
        if location and location not in self._locations:
            problems.append(_err("NOT_FOUND", f"Location `{location}` not found.",
                                 f"{at}.location_id"))
        if body.get("quantity"):
            quantity = self._quantity(body["quantity"])
            positive = kind == "ADJUSTMENT"
            if quantity is None or quantity < 0 or (positive and quantity == 0):
                problems.append(_err("INVALID_VALUE", "quantity must be a decimal string with "
                                     "at most 5 digits after the point, "
                                     + ("greater than 0." if positive else "0 or more."),
                                     f"{at}.quantity"))
        if body.get("occurred_at"):
            when = _time(body["occurred_at"])
            if when is None:
                problems.append(_err("INVALID_TIME", "occurred_at must be an RFC 3339 "
                                     "timestamp.", f"{at}.occurred_at"))
            elif when < now - INVENTORY_PAST_LIMIT or when > now + INVENTORY_FUTURE_SKEW:
                problems.append(_err("INVALID_TIME", "occurred_at cannot be older than 24 "
                                     "hours or in the future.", f"{at}.occurred_at"))
        if kind == "ADJUSTMENT":
            source, target = body.get("from_state"), body.get("to_state")
            for field, state in (("from_state", source), ("to_state", target)):
                if state is None:
                    problems.append(_err("MISSING_REQUIRED_PARAMETER",
                                         f"Field `{field}` is required.", f"{at}.{field}"))
                elif state in self._READ_ONLY_STATES:
                    problems.append(_err("INVALID_VALUE", f"The Inventory API cannot move "
                                         f"quantities to or from {state}.", f"{at}.{field}"))
            if (source and target and source not in self._READ_ONLY_STATES
                    and target not in self._READ_ONLY_STATES
                    and (source, target) not in self._TRANSITIONS):
                problems.append(_err("INVALID_VALUE", f"An adjustment cannot move quantities "
                                     f"from {source} to {target}.", f"{at}.to_state"))
        elif body.get("state") != "IN_STOCK":
            problems.append(_err("INVALID_VALUE", "A physical count sets the IN_STOCK "
                                 "quantity: state must be IN_STOCK.", f"{at}.state"))
        return problems

    def _count_key(self, location: str, object_id: str) -> str:
        return f"{location}|{object_id}"

    def _recount(self, location: str, object_id: str) -> dict[str, Any]:
        """The IN_STOCK count of a variation at a location from its history: the latest
        physical count by ``occurred_at``, plus the adjustments that occurred after it."""
        history = [m for m in self._change_meta.values()
                   if m.location == location and m.object_id == object_id]
        counts = [m for m in history if m.change["type"] == "PHYSICAL_COUNT"]
        base, since = Decimal(0), None
        if counts:
            latest = max(counts, key=lambda m: (m.occurred, m.created))
            base, since = Decimal(latest.change["physical_count"]["quantity"]), latest.occurred
        total = base
        for meta in history:
            if meta.change["type"] != "ADJUSTMENT" or (since is not None
                                                         and meta.occurred <= since):
                continue
            adjustment = meta.change["adjustment"]
            quantity = Decimal(adjustment["quantity"])
            if adjustment["to_state"] == "IN_STOCK":
                total += quantity
            elif adjustment["from_state"] == "IN_STOCK":
                total -= quantity
        received = max((m.created for m in history), default=datetime.now(UTC))
        count = {"catalog_object_id": object_id, "catalog_object_type": "ITEM_VARIATION",
                 "state": "IN_STOCK", "location_id": location,
                 "quantity": self._decimal_text(total), "calculated_at": self._stamp(received),
                 "is_estimated": False}
        self.collection("inventory")[self._count_key(location, object_id)] = count
        return count

    def _record_change(self, change: dict[str, Any], source: dict[str, str]) -> dict[str, Any]:
        """Store one valid change with Square's read-only fields; answer it as Square does."""
        kind = change["type"]
        name = "adjustment" if kind == "ADJUSTMENT" else "physical_count"
        created = self._change_stamp()
        body = {k: v for k, v in change[name].items() if v is not None}
        body.update({"id": _new_id(), "catalog_object_type": "ITEM_VARIATION",
                     "created_at": self._stamp(created), "source": source})
        body["quantity"] = self._decimal_text(Decimal(body["quantity"]))
        if kind == "ADJUSTMENT" and body.get("to_state") == "SOLD":
            variation = self._variation(body["catalog_object_id"]) or {}
            price = variation.get("item_variation_data", {}).get("price_money")
            if isinstance(price, dict) and isinstance(price.get("amount"), int):
                amount = int(Decimal(price["amount"]) * Decimal(body["quantity"]))
                body["total_price_money"] = {"amount": amount, "currency": price["currency"]}
        public = {"type": kind, name: body}
        self.collection("inventory_change")[body["id"]] = public
        occurred = _time(body["occurred_at"]) or created
        self._change_meta[body["id"]] = _ChangeMeta(public, body["location_id"],
                                                    body["catalog_object_id"], occurred, created)
        return public

    def _apply_changes(self, changes: list[dict[str, Any]], source: dict[str, str],
                       ignore_unchanged: bool) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """Record ``changes`` (already valid); the changes made and the counts touched."""
        made: list[dict[str, Any]] = []
        touched: dict[str, tuple[str, str]] = {}
        for change in changes:
            body = change["adjustment" if change["type"] == "ADJUSTMENT" else "physical_count"]
            location, object_id = body["location_id"], body["catalog_object_id"]
            touched[self._count_key(location, object_id)] = (location, object_id)
            if change["type"] == "PHYSICAL_COUNT" and ignore_unchanged:
                current = self.collection("inventory").get(self._count_key(location, object_id))
                if current is not None and Decimal(current["quantity"]) == Decimal(
                        body["quantity"]):
                    continue
            made.append(self._record_change(change, source))
            self._recount(location, object_id)
        counts = [self._recount(loc, obj) for loc, obj in touched.values()]
        return made, counts

    def _inventory_event(self, counts: list[dict[str, Any]]) -> bytes:
        event = {"merchant_id": MERCHANT_ID, "type": "inventory.count.updated",
                 "event_id": str(uuid.uuid4()), "created_at": _now_iso(),
                 "data": {"type": "inventory_counts", "id": str(uuid.uuid4()),
                          "object": {"inventory_counts": counts}}}
        return json.dumps(event, separators=(",", ":")).encode()

    def _notify_counts(self, counts: list[dict[str, Any]]) -> None:
        """Send ``inventory.count.updated`` for ``counts`` as they are now (built at once, not
        when the delivery goes out, so each event carries the counts of its own change)."""
        url = self.settings.webhook_url
        if not url or not counts:
            return
        body = self._inventory_event([dict(c) for c in counts])

        async def deliver() -> None:
            try:
                await self._post_webhook(url, self.sign_webhook(body, url, int(time.time())),
                                         body)
            except Exception as exc:
                log.warning("emulator.webhook_failed", provider=self.name, url=url,
                            error=type(exc).__name__)

        task = asyncio.get_running_loop().create_task(deliver())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def inventory_batch_change(self, request: web.Request) -> web.Response:
        body = await self._keyed_body(request, INVENTORY_IDEMPOTENCY_MAX, required=True)
        if isinstance(body, web.Response):
            return body
        changes = body.get("changes") or []
        if not isinstance(changes, list):
            return self._errors(400, _err("EXPECTED_ARRAY", "changes must be an array",
                                          "changes"))
        request[BATCH_SIZE] = len(changes)
        if len(changes) > MAX_INVENTORY_CHANGES:
            return self._errors(400, _err(
                "ARRAY_LENGTH_TOO_LONG", f"A request may hold at most {MAX_INVENTORY_CHANGES} "
                f"changes; this one has {len(changes)}.", "changes"))

        async def handle() -> web.Response:
            now = datetime.now(UTC)
            problems = [p for i, c in enumerate(changes)
                        for p in self._inventory_problems(i, c, now)]
            if problems:  # all or nothing
                return self._errors(400, *problems)
            source = {"product": "EXTERNAL_API", "application_id": CLIENT_ID,
                      "name": "syncd"}
            made, counts = self._apply_changes(changes, source,
                                               body.get("ignore_unchanged_counts") is not False)
            self._notify_counts(counts if made else [])
            return web.json_response({"counts": counts, "changes": made})

        return await self.idempotent(request, body["idempotency_key"], body, handle)

    def _inventory_filter(self, body: Mapping[str, Any], field: str) -> web.Response | None:
        value = body.get(field)
        if value is not None and _time(value) is None:
            return self._errors(400, _err("INVALID_TIME", f"{field} must be an RFC 3339 "
                                          "timestamp.", field))
        return None

    async def inventory_batch_counts(self, request: web.Request) -> web.Response:
        body = await self._body(request)
        if isinstance(body, web.Response):
            return body
        bad = self._inventory_filter(body, "updated_after")
        if bad is not None:
            return bad
        objects, locations = body.get("catalog_object_ids"), body.get("location_ids")
        states = body.get("states")
        after = _time(body.get("updated_after"))
        found = [dict(c) for c in self.collection("inventory").values()
                 if (objects is None or c["catalog_object_id"] in objects)
                 and (locations is None or c["location_id"] in locations)
                 and (states is None or c["state"] in states)
                 and (after is None or (_time(c["calculated_at"]) or after) > after)]
        found.sort(key=lambda c: (c["calculated_at"], c["catalog_object_id"]), reverse=True)
        return self._page(found, body.get("cursor"), body.get("limit") or 1000, "counts")

    async def inventory_batch_changes(self, request: web.Request) -> web.Response:
        body = await self._body(request)
        if isinstance(body, web.Response):
            return body
        for field in ("updated_after", "updated_before"):
            bad = self._inventory_filter(body, field)
            if bad is not None:
                return bad
        types = body.get("types") or ["PHYSICAL_COUNT", "ADJUSTMENT"]
        if "TRANSFER" in types:
            return self._errors(400, _err("INVALID_VALUE", "types filters PHYSICAL_COUNT and "
                                          "ADJUSTMENT changes only.", "types"))
        objects, locations = body.get("catalog_object_ids"), body.get("location_ids")
        states = body.get("states")
        after, before = _time(body.get("updated_after")), _time(body.get("updated_before"))
        found = []
        for meta in self._change_meta.values():
            change = meta.change
            inner = change.get("adjustment") or change.get("physical_count") or {}
            moved = {inner.get("from_state"), inner.get("to_state"), inner.get("state")}
            if (change["type"] in types
                    and (objects is None or meta.object_id in objects)
                    and (locations is None or meta.location in locations)
                    and (states is None or bool(moved & set(states)))
                    and (after is None or meta.created > after)
                    and (before is None or meta.created < before)):
                found.append(meta)
        found.sort(key=lambda m: (m.occurred, m.created))
        return self._page([m.change for m in found], body.get("cursor"),
                          body.get("limit") or 100, "changes")

    def pos_sale(self, catalog_object_id: str, quantity: int = 1, *,
                 location_id: str | None = None, occurred_at: datetime | None = None,
                 allow_negative: bool = False) -> dict[str, Any] | None:
        """Sell ``quantity`` at Square Point of Sale: an IN_STOCK -> SOLD adjustment of the
        variation at the location (default: the seller's first), with its webhook. Answers
        the new count, or None when the register refuses: an unknown variation, or fewer in
        stock than sold unless ``allow_negative`` (a register set to sell past zero)."""
        location = location_id or LOCATION_ID
        if quantity < 1 or self._variation(catalog_object_id) is None or \
                location not in self._locations:
            return None
        current = self.collection("inventory").get(self._count_key(location,
                                                                   catalog_object_id))
        in_stock = Decimal(current["quantity"]) if current else Decimal(0)
        if in_stock < quantity and not allow_negative:
            return None
        when = occurred_at or datetime.now(UTC)
        change = {"type": "ADJUSTMENT", "adjustment": {
            "catalog_object_id": catalog_object_id, "location_id": location,
            "from_state": "IN_STOCK", "to_state": "SOLD", "quantity": str(quantity),
            "occurred_at": self._stamp(when)}}
        _, counts = self._apply_changes(
            [change], {"product": "SQUARE_POS", "name": "Square Point of Sale"}, True)
        self._notify_counts(counts)
        return counts[0]

    async def _control_pos_sale(self, request: web.Request) -> web.Response:
        """``{"catalog_object_id", "quantity"?, "location_id"?, "occurred_at"?,
        "allow_negative"?}``: a sale at the register (see :meth:`pos_sale`)."""
        try:
            spec = await request.json()
            object_id = str(spec["catalog_object_id"])
            quantity = int(spec.get("quantity", 1))
            occurred = _time(spec.get("occurred_at")) if spec.get("occurred_at") else None
        except (ValueError, KeyError, TypeError) as exc:
            return web.json_response({"error": f"bad sale: {exc}"}, status=400)
        count = self.pos_sale(object_id, quantity, location_id=spec.get("location_id"),
                              occurred_at=occurred,
                              allow_negative=bool(spec.get("allow_negative")))
        if count is None:
            return web.json_response({"error": "the register refused the sale (unknown item "
                                               "or not enough in stock)"}, status=409)
        return web.json_response({"count": count})
