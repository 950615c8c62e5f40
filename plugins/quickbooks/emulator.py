"""A local QuickBooks Online Accounting v3 API: items, customers, sales, batch, CDC, OAuth.

Every request is first checked against ``spec/accounting.yaml`` beside this module: Intuit
publishes no OpenAPI description for Accounting v3, so that file encodes the documented
fields, types, lengths and limits of the entities syncd writes, each with its source (see
docs/emulators.md). Problems are answered as Intuit's ValidationFault, one ``Error`` each
with the field as ``element``: unknown fields and types 2010, enums 2170, missing fields
2020, lengths 2050, more than 30 batch items 1040. Inside a batch, a value problem of one
item's entity (a length, a missing field) is that item's Fault and the others proceed; a
request QuickBooks cannot read (an unknown field, a wrong type) is refused whole.

Shapes follow the documented ones: responses wrap the entity
(``{"Customer": {...}, "time": ...}``); errors are
``{"Fault": {"Error": [{"Message", "Detail", "code", "element"}], "type"}, "time"}``; queries
answer ``{"QueryResponse": {"Customer": [...], "startPosition", "maxResults"}}``; batch
answers ``{"BatchItemResponse": [{"bId", "<Entity>" | "Fault"}]}``.

Semantics kept: ``requestid`` replays the first answer per realm (<= 50 chars, <= 36 on
batch); ``minorversion`` >= 75; updates need ``Id`` and the current ``SyncToken`` (else 5010,
Stale Object); ``DisplayName`` is unique across customers, vendors and employees and item
``Name`` among items (else 6240, Duplicate Name Exists); batch carries at most 30 items and
each answers alone; 10 requests/s per realm+app, 500/min per realm and 40 batch calls/min
answered with 429; OAuth with Basic client auth, 3600 s access tokens and rotating refresh
tokens; ``realmId`` on the authorize callback; webhooks signed with ``intuit-signature``.

Whether Intuit sends ``Retry-After`` on 429 is not documented; the emulator sends one (whole
seconds) and clients fall back to the documented 60 s wait when it is missing.

Collections: ``product`` (Item), ``customer``, ``transaction`` (SalesReceipt and Invoice),
plus ``account`` and ``vendor``. Stored records carry ``id`` (the Id) for the control API;
API answers do not.
"""

from __future__ import annotations

import base64
import json
import re
import secrets
import time
from collections import deque
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlencode

from aiohttp import web

from daemon.errors import SyncdError
from daemon.provider import EmulatorSettings
from daemon.testing.emulator import ACCOUNT, BATCH_SIZE, Emulator
from daemon.testing.openapi import (
    Description,
    InvalidRequest,
    Problem,
    UnknownPath,
    audit_responses,
    check_request,
)
from plugins.quickbooks.webhooks import sign

__all__ = ["DEFAULT_REALM", "DESCRIPTION", "QuickBooksEmulator", "description", "refuses"]

#: The documented Accounting API, encoded with sources (spec/README.md).
DESCRIPTION = Path(__file__).resolve().parent / "spec" / "accounting.yaml"
#: Problems QuickBooks finds in a batch item's entity while it handles that item: the item
#: fails alone. Anything else stops it reading the request at all.
_ITEM_KINDS = frozenset({"missing", "too_long", "too_short", "too_large", "too_small",
                         "pattern", "read_only"})
_ITEM_FAULTS: web.RequestKey[dict[int, list[dict[str, str]]]] = web.RequestKey(
    "quickbooks_item_faults", dict)

DEFAULT_REALM = "9130350000000001"
# QuickBooks Online's documented limits, the emulator's own (never the plugin's). Source:
# shared/reference/providers.md (QuickBooks): at most 30 items per batch request (Intuit's
# limits page), minor versions below 75 dropped on 2025-08-01, MAXRESULTS at most 1000.
BATCH_MAX = 30
MIN_MINOR_VERSION = 75
QUERY_PAGE_MAX = 1000
CLIENT_ID = "emulated-client-id"
CLIENT_SECRET = "emulated-client-secret"  # noqa: S105 - a fixed test value of the emulator
ACCESS_TTL = 3600
REFRESH_TTL = 8_726_400  # 101 days, as x_refresh_token_expires_in

_KINDS: Mapping[str, str] = {"item": "Item", "customer": "Customer",
                             "salesreceipt": "SalesReceipt", "invoice": "Invoice",
                             "account": "Account", "vendor": "Vendor"}
_COLLECTION: Mapping[str, str] = {"Item": "product", "Customer": "customer",
                                  "SalesReceipt": "transaction", "Invoice": "transaction",
                                  "Account": "account", "Vendor": "vendor"}
_WRITABLE = frozenset({"Item", "Customer", "SalesReceipt", "Invoice"})
_QUERY = re.compile(
    r"^\s*select\s+(?P<what>\*|count\(\*\))\s+from\s+(?P<entity>\w+)"
    r"(?:\s+where\s+(?P<where>.+?))?"
    r"(?:\s+orderby\s+(?P<order>[\w.]+)(?:\s+(?P<dir>asc|desc))?)?"
    r"(?:\s+startposition\s+(?P<start>\d+))?"
    r"(?:\s+maxresults\s+(?P<max>\d+))?\s*$",
    re.IGNORECASE | re.DOTALL,
)
_COND = re.compile(
    r"^\s*(?P<field>[\w.]+)\s*(?P<op>=|<=|>=|<|>|\bin\b|\blike\b)\s*(?P<value>.+?)\s*$",
    re.IGNORECASE | re.DOTALL,
)
_STRING = re.compile(r"'((?:[^'\\]|\\.)*)'")


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def description() -> Description:
    """The encoded Accounting API description, loaded once per process."""
    return Description.from_file(DESCRIPTION, name="quickbooks")


def _element(path: tuple[str | int, ...]) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _error(problem: Problem, path: tuple[str | int, ...]) -> dict[str, str]:
    """One problem as an Error of Intuit's Fault (codes from Intuit's error-code list)."""
    name, kind, value = _element(path), problem.kind, problem.value
    shown = value if not isinstance(value, str) else value[:60]
    invalid = "Request has invalid or unsupported property"
    if kind == "unknown":
        code, message = "2010", invalid
        detail = (f"Query parameter {name} is not supported" if problem.location == "query"
                  else f"Property Name:Unrecognized field \"{path[-1]}\" specified is "
                  "unsupported or invalid")
    elif kind == "missing":
        code = "2020"
        message = "Required param missing, need to supply the required value for the API"
        detail = f"Required parameter {name} is missing in the request"
    elif kind == "enum":
        code, message = "2170", "Invalid Enumeration"
        detail = f"Invalid Enumeration : {shown} (one of {problem.expected})"
    elif kind in ("too_long", "too_short"):
        code = "2050"
        message = "String length is either shorter or longer than supported by specification"
        low, high = (0, problem.expected) if kind == "too_long" else (problem.expected, "")
        detail = (f"String length specified does not match the supported length. Min:{low} "
                  f"Max:{high} supplied length:{len(str(value))}")
    elif kind == "too_many":
        code, message = "1040", "Batch size exceeds allowed limit"
        detail = f"The batch limit size is {problem.expected}; it had {len(value or [])}."
    elif kind == "read_only":
        code, message, detail = "2010", invalid, f"Property Name:{name} is read only"
    else:
        code, message = "2010", invalid
        detail = f"Property Name:{name} value {shown!r} is not valid ({kind}: {problem.expected})"
    return {"Message": message, "Detail": detail, "code": code, "element": name}


def refuses(status: int, body: Any, invalid: InvalidRequest) -> bool:
    """Whether an answer refuses ``invalid`` as QuickBooks does: a 400 ValidationFault whose
    Error names the field, or, for a value problem of a batch item's entity, a 200 whose
    item answer is such a Fault (the conformance kit's refusal for this emulator)."""
    field = invalid.field
    if status == 400 and isinstance(body, dict):
        fault = body.get("Fault") or {}
        return fault.get("type") == "ValidationFault" and any(
            e.get("element") == _element(field) and e.get("code") and e.get("Message")
            for e in fault.get("Error", []))
    if status != 200 or not isinstance(body, dict) or len(field) < 3:
        return False
    for answer in body.get("BatchItemResponse") or []:
        fault = answer.get("Fault") or {}
        if fault.get("type") == "ValidationFault" and any(
                e.get("element") == _element(field[3:]) for e in fault.get("Error", [])):
            return True
    return False


def _unescape(text: str) -> str:
    return re.sub(r"\\(.)", r"\1", text)


class _QueryError(SyncdError, ValueError):
    pass


def _split_and(where: str) -> list[str]:
    parts, depth, quote_on, current = [], 0, False, ""
    i = 0
    while i < len(where):
        c = where[i]
        if c == "\\" and quote_on:
            current += where[i:i + 2]
            i += 2
            continue
        if c == "'":
            quote_on = not quote_on
        elif not quote_on and c == "(":
            depth += 1
        elif not quote_on and c == ")":
            depth -= 1
        if (not quote_on and depth == 0 and where[i:i + 5].lower() == " and "):
            parts.append(current)
            current = ""
            i += 5
            continue
        current += c
        i += 1
    parts.append(current)
    return parts


def _field_value(record: Mapping[str, Any], field: str) -> Any:
    if field == "PrimaryEmailAddr":
        field = "PrimaryEmailAddr.Address"
    node: Any = record
    for part in field.split("."):
        node = node.get(part) if isinstance(node, Mapping) else None
    return node


def _matches(record: Mapping[str, Any], cond: str) -> bool:
    m = _COND.match(cond)
    if m is None:
        raise _QueryError(f"cannot parse condition {cond.strip()!r}")
    field, op, raw = m["field"], m["op"].lower(), m["value"]
    have = _field_value(record, field)
    if op == "in":
        inner = raw.strip().removeprefix("(").removesuffix(")")
        values = ([_unescape(v) for v in _STRING.findall(inner)] if "'" in inner
                  else [v.strip() for v in inner.split(",")])
        return have is not None and str(have).casefold() in {v.casefold() for v in values}
    found = _STRING.fullmatch(raw.strip())
    value = _unescape(found[1]) if found else raw.strip()
    if have is None:
        return False
    if isinstance(have, bool):
        have = str(have).lower()
    text = str(have)
    if op == "=":
        return text.casefold() == value.casefold()
    if op == "like":
        pattern = "^" + ".*".join(re.escape(p) for p in value.split("%")) + "$"
        return re.match(pattern, text, re.IGNORECASE) is not None
    if field.endswith("Time"):
        try:
            left, right = datetime.fromisoformat(text), datetime.fromisoformat(value)
        except ValueError as exc:
            raise _QueryError(f"bad time {value!r}") from exc
        return {"<": left < right, ">": left > right, "<=": left <= right,
                ">=": left >= right}[op]
    return {"<": text < value, ">": text > value, "<=": text <= value, ">=": text >= value}[op]


class QuickBooksEmulator(Emulator):
    """QuickBooks Online Accounting v3, the parts syncd uses."""

    name = "quickbooks"
    default_account = DEFAULT_REALM
    credential_kind = "access_token"

    #: Webhook payloads: the classic ``eventNotifications`` or the CloudEvents array.
    webhook_format: Literal["classic", "cloudevents"] = "classic"
    #: Path parameters for requests made from the description (the conformance kit's):
    #: the emulated company, which every request must name.
    path_values: Mapping[str, str] = {"realmId": DEFAULT_REALM}

    @staticmethod
    def refuses(status: int, body: Any, invalid: InvalidRequest) -> bool:
        """QuickBooks' refusal of a request made from its description (see :func:`refuses`)."""
        return refuses(status, body, invalid)

    def __init__(self, settings: EmulatorSettings | None = None) -> None:
        self._ids: dict[str, int] = {}
        self._codes: dict[str, tuple[str, str]] = {}
        self._minute: dict[str, deque[float]] = {}
        self._batch_minute: dict[str, deque[float]] = {}
        self._deleted: list[dict[str, Any]] = []
        super().__init__(settings)
        #: The encoded description every request is checked against.
        self.description: Description = description()
        self.on_reset()

    # --- base hooks ---------------------------------------------------------------------

    def _issue_default_token(self) -> Any:
        return self.tokens.issue_access(self.default_account,
                                        self.settings.access_token_ttl or ACCESS_TTL)

    def default_account_facts(self) -> dict[str, str]:
        return {"account": DEFAULT_REALM, "realm_id": DEFAULT_REALM}

    def on_reset(self) -> None:
        self._minute.clear()
        self._batch_minute.clear()
        self._deleted.clear()
        self._ids.clear()
        # The chart of accounts of Intuit's sandbox company, with the ids Intuit's own request
        # examples use (IncomeAccountRef 79 "Sales of Product Income", 35 "Checking"...).
        for rid, account in (
            ("1", {"Name": "Services", "AccountType": "Income",
                   "AccountSubType": "ServiceFeeIncome"}),
            ("4", {"Name": "Undeposited Funds", "AccountType": "Other Current Asset",
                   "AccountSubType": "UndepositedFunds"}),
            ("35", {"Name": "Checking", "AccountType": "Bank", "AccountSubType": "Checking"}),
            ("79", {"Name": "Sales of Product Income", "AccountType": "Income",
                    "AccountSubType": "SalesOfProductIncome"}),
            ("80", {"Name": "Cost of Goods Sold", "AccountType": "Cost of Goods Sold",
                    "AccountSubType": "SuppliesMaterialsCogs"}),
        ):
            self._insert("Account", DEFAULT_REALM, dict(account), notify=False, rid=rid)

    def rate_limit(self) -> tuple[float, float]:
        return (10.0, 10.0)  # 10 requests/s per realm+app

    def error_response(self, status: int, code: str, message: str,
                       detail: str = "", fault_type: str = "ValidationFault") -> web.Response:
        return web.json_response(self._fault(code, message, detail, fault_type), status=status)

    @staticmethod
    def _fault(code: str, message: str, detail: str = "",
               fault_type: str = "ValidationFault", element: str = "") -> dict[str, Any]:
        return {"Fault": {"Error": [{"Message": message, "Detail": detail or message,
                                     "code": code, "element": element}],
                          "type": fault_type}, "time": _now()}

    def unauthorized_response(self) -> web.Response:
        return self.error_response(401, "3200", "message=AuthenticationFailed; "
                                   "errorCode=003200; statusCode=401",
                                   "Token expired or invalid", "AuthenticationFault")

    def rate_limited_response(self, retry_after: float) -> web.Response:
        response = self.error_response(429, "3001", "message=ThrottleExceeded; "
                                       "errorCode=003001; statusCode=429",
                                       "The request limit was reached.", "ThrottlingFault")
        response.headers["Retry-After"] = str(max(1, int(retry_after + 0.999)))
        return response

    def server_error_response(self) -> web.Response:
        return self.error_response(500, "10000", "An application error has occurred while "
                                   "processing your request", "System Failure Error",
                                   "SystemFault")

    def idempotency_mismatch_response(self, key: str) -> web.Response:
        return self.error_response(400, "4000", "Duplicate request id")

    def is_public(self, request: web.Request) -> bool:
        return request.path.startswith(("/connect/", "/oauth2/", "/v2/oauth2/"))

    async def check_request(self, request: web.Request) -> web.Response | None:
        """Refuse what QuickBooks refuses, as a ValidationFault (see the module's notes)."""
        if not self.settings.strict:
            return None
        try:
            problems = await check_request(self.description, request)
        except UnknownPath:
            return None  # an entity or path syncd does not use: the handler answers it
        if not problems:
            return None
        if problems[0].kind == "body":
            return self.error_response(400, "2010", "Request has invalid or unsupported "
                                       "property", "The request body is not valid JSON.")
        query = [p for p in problems if p.location == "query"]
        for p in query:  # the emulator's own wording of its version and request-id checks
            if p.path == ("minorversion",):
                return web.json_response(self._fault(
                    "4002", "Invalid minor version",
                    f"minorversion must be {MIN_MINOR_VERSION} or later.",
                    element="minorversion"), status=400)
            if p.path == ("requestid",) and p.kind == "too_long":
                return web.json_response(self._fault(
                    "4000", "Request id too long",
                    f"requestid is limited to {p.expected} characters.",
                    element="requestid"), status=400)
        items: dict[int, list[dict[str, str]]] = {}
        whole = []
        for p in problems:
            at = p.path
            if (p.location == "body" and p.kind in _ITEM_KINDS and len(at) > 3
                    and at[0] == "BatchItemRequest" and isinstance(at[1], int)
                    and at[2] in _WRITABLE):
                items.setdefault(at[1], []).append(_error(p, at[3:]))
            else:
                whole.append(_error(p, at))
        if whole:
            return web.json_response({"Fault": {"Error": whole[:10], "type": "ValidationFault"},
                                      "time": _now()}, status=400)
        request[_ITEM_FAULTS] = items
        return None

    def app(self) -> web.Application:
        app = super().app()
        audit_responses(app, self.description)
        return app

    def account_of(self, request: web.Request) -> str:
        account = request.get(ACCOUNT)
        return account if isinstance(account, str) else "anonymous"

    def sign_webhook(self, body: bytes, url: str, timestamp: int) -> dict[str, str]:
        return {"intuit-signature": sign(body, self.settings.webhook_secret),
                "Content-Type": "application/json"}

    def webhook_event(self, collection: str, record_id: str, change: str) -> bytes:
        record = self.collection(collection).get(record_id) or {}
        name = str(record.get("_kind") or {"product": "Item", "customer": "Customer",
                                            "transaction": "SalesReceipt"}.get(collection,
                                                                               collection))
        operation = {"created": "Create", "deleted": "Delete"}.get(change, "Update")
        when = str((record.get("MetaData") or {}).get("LastUpdatedTime") or _now())
        if self.webhook_format == "cloudevents":
            past = {"Create": "created", "Delete": "deleted"}.get(operation, "updated")
            events = [{"specversion": "1.0", "id": secrets.token_hex(16),
                       "source": "intuit.quickbooks", "type": f"qbo.{name.lower()}.{past}.v1",
                       "datacontenttype": "application/json", "time": when,
                       "intuitentityid": record_id, "intuitaccountid": DEFAULT_REALM,
                       "data": {}}]
            return json.dumps(events).encode()
        return json.dumps({"eventNotifications": [{
            "realmId": DEFAULT_REALM,
            "dataChangeEvent": {"entities": [{"name": name, "id": record_id,
                                              "operation": operation,
                                              "lastUpdated": when}]}}]}).encode()

    # --- store helpers --------------------------------------------------------------------

    def _next_id(self, realm: str, collection: str) -> str:
        key = f"{realm}/{collection}"
        self._ids[key] = self._ids.get(key, 0) + 1
        return str(self._ids[key])

    def _all(self, kind: str, realm: str) -> list[dict[str, Any]]:
        return [r for r in self.collection(_COLLECTION[kind]).values()
                if r.get("_kind") == kind and r.get("_realm") == realm]

    def _get(self, kind: str, realm: str, rid: str) -> dict[str, Any] | None:
        record = self.collection(_COLLECTION[kind]).get(f"{realm}:{rid}" if realm !=
                                                        DEFAULT_REALM else rid)
        if record is None or record.get("_kind") != kind or record.get("_realm") != realm:
            return None
        return record

    def _key(self, realm: str, rid: str) -> str:
        return rid if realm == DEFAULT_REALM else f"{realm}:{rid}"

    def _insert(self, kind: str, realm: str, body: dict[str, Any], *,
                notify: bool = True, rid: str | None = None) -> dict[str, Any]:
        if rid is None:
            rid = self._next_id(realm, _COLLECTION[kind])
        else:
            key = f"{realm}/{_COLLECTION[kind]}"
            self._ids[key] = max(self._ids.get(key, 0), int(rid))
        now = _now()
        if kind in ("Item", "Customer", "Vendor", "Account"):
            body.setdefault("Active", True)
        record = {**body, "Id": rid, "SyncToken": "0", "domain": "QBO", "sparse": False,
                  "MetaData": {"CreateTime": now, "LastUpdatedTime": now},
                  "id": rid, "_kind": kind, "_realm": realm}
        self.put(_COLLECTION[kind], self._key(realm, rid), record,
                 change="created" if notify else None)
        return record

    @staticmethod
    def public(record: Mapping[str, Any]) -> dict[str, Any]:
        """A stored record as the API shows it."""
        return {k: v for k, v in record.items() if k != "id" and not k.startswith("_")}

    def _wrap(self, kind: str, record: Mapping[str, Any]) -> dict[str, Any]:
        return {kind: self.public(record), "time": _now()}

    # --- request checks -------------------------------------------------------------------

    def _realm(self, request: web.Request) -> str | None:
        realm = request.match_info.get("realm", "")
        return realm if realm == request.get(ACCOUNT) else None

    def _window(self, store: dict[str, deque[float]], realm: str, limit: int) -> float:
        now = time.monotonic()
        stamps = store.setdefault(realm, deque())
        while stamps and stamps[0] <= now - 60.0:
            stamps.popleft()
        if len(stamps) >= limit:
            return stamps[0] + 60.0 - now
        stamps.append(now)
        return 0.0

    def _common(self, request: web.Request, *, batch: bool = False) -> web.Response | None:
        if self._realm(request) is None:
            return self.error_response(403, "100", "General Authentication Error",
                                       "The token is not valid for this company (realmId).",
                                       "AuthorizationFault")
        minor = request.query.get("minorversion")
        if minor is None or not minor.isdigit() or int(minor) < MIN_MINOR_VERSION:
            return self.error_response(400, "4002", "Invalid minor version",
                                       f"minorversion must be {MIN_MINOR_VERSION} or later.")
        rid = request.query.get("requestid")
        if rid is not None and len(rid) > (36 if batch else 50):
            return self.error_response(400, "4000", "Request id too long",
                                       f"requestid is limited to {36 if batch else 50} "
                                       "characters.")
        if self.settings.enforce_rate_limits:
            scale = self.settings.rate_limit_scale
            realm = str(request.get(ACCOUNT))
            wait = self._window(self._minute, realm, max(1, int(500 * scale)))
            if not wait and batch:
                wait = self._window(self._batch_minute, realm, max(1, int(40 * scale)))
            if wait:
                return self.rate_limited_response(wait)
        return None

    @staticmethod
    def _entity_name(request: web.Request) -> str:
        """The entity a read or write names: ``/v3/company/{realm}/{entity}[/{id}]``."""
        return (request.match_info.get("entity") or request.path.split("/")[4]).lower()

    # --- routes ---------------------------------------------------------------------------

    def routes(self) -> list[web.RouteDef]:
        c = "/v3/company/{realm}"
        return [
            web.get("/connect/oauth2", self._oauth_authorize),
            web.post("/oauth2/v1/tokens/bearer", self._oauth_token),
            web.post("/v2/oauth2/tokens/revoke", self._oauth_revoke),
            web.get(c + "/companyinfo/{id}", self._company_info),
            web.get(c + "/query", self._query_route),
            web.post(c + "/query", self._query_route),
            web.post(c + "/batch", self._batch),
            web.get(c + "/cdc", self._cdc),
            # The entities syncd writes, by name (as the description has them), then any.
            *(route for entity in ("customer", "item", "salesreceipt", "invoice")
              for route in (web.get(f"{c}/{entity}/{{id}}", self._read),
                            web.post(f"{c}/{entity}", self._write))),
            web.get(c + "/{entity}/{id}", self._read),
            web.post(c + "/{entity}", self._write),
        ]

    # --- OAuth ----------------------------------------------------------------------------

    def _client_ok(self, request: web.Request) -> bool:
        scheme, _, value = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            user, _, password = base64.b64decode(value.strip(), validate=True).decode(
                ).partition(":")
        except (ValueError, UnicodeDecodeError):
            return False
        return secrets.compare_digest(user, CLIENT_ID) and secrets.compare_digest(
            password, CLIENT_SECRET)

    async def _oauth_authorize(self, request: web.Request) -> web.Response:
        q = request.query
        if (q.get("response_type") != "code" or q.get("client_id") != CLIENT_ID
                or not q.get("redirect_uri") or not q.get("scope")):
            return web.Response(status=400, text="invalid authorize request")
        code = secrets.token_urlsafe(24)
        self._codes[code] = (DEFAULT_REALM, q["redirect_uri"])
        params = {"code": code, "realmId": DEFAULT_REALM}
        if q.get("state"):
            params["state"] = q["state"]
        raise web.HTTPFound(f"{q['redirect_uri']}?{urlencode(params)}")

    def _token_answer(self, access: Any, refresh: Any) -> web.Response:
        return web.json_response({"token_type": "bearer", "access_token": access.value,
                                  "expires_in": ACCESS_TTL, "refresh_token": refresh.value,
                                  "x_refresh_token_expires_in": REFRESH_TTL})

    async def _oauth_token(self, request: web.Request) -> web.Response:
        if not self._client_ok(request):
            return web.json_response({"error": "invalid_client"}, status=401)
        form = await request.post()
        grant = form.get("grant_type")
        ttl = self.settings.access_token_ttl or ACCESS_TTL
        if grant == "authorization_code":
            issued = self._codes.pop(str(form.get("code", "")), None)
            if issued is None or issued[1] != form.get("redirect_uri"):
                return web.json_response({"error": "invalid_grant"}, status=400)
            access = self.tokens.issue_access(issued[0], ttl)
            refresh = self.tokens.issue_refresh(issued[0], REFRESH_TTL)
            return self._token_answer(access, refresh)
        if grant == "refresh_token":
            pair = self.tokens.refresh(str(form.get("refresh_token", "")), access_ttl=ttl,
                                       rotate=True, refresh_ttl=REFRESH_TTL)
            if pair is None:
                return web.json_response({"error": "invalid_grant"}, status=400)
            return self._token_answer(*pair)
        return web.json_response({"error": "unsupported_grant_type"}, status=400)

    async def _oauth_revoke(self, request: web.Request) -> web.Response:
        if not self._client_ok(request):
            return web.json_response({"error": "invalid_client"}, status=401)
        try:
            body = await request.json()
        except ValueError:
            body = None
        token = body.get("token") if isinstance(body, Mapping) else None
        if not isinstance(token, str):
            return web.json_response({"error": "invalid_request"}, status=400)
        found = self.tokens.lookup(token, "refresh") or self.tokens.lookup(token)
        if found is not None:
            self.tokens.revoke_account(found.account)
        return web.Response(status=200)

    # --- reads ----------------------------------------------------------------------------

    async def _company_info(self, request: web.Request) -> web.Response:
        problem = self._common(request)
        if problem is not None:
            return problem
        realm = request.match_info["realm"]
        return web.json_response({"CompanyInfo": {"CompanyName": "Emulated Venue Ltd",
                                                  "Id": "1", "Country": "US",
                                                  "SyncToken": "0", "realmId": realm},
                                  "time": _now()})

    async def _read(self, request: web.Request) -> web.Response:
        problem = self._common(request)
        if problem is not None:
            return problem
        kind = _KINDS.get(self._entity_name(request))
        realm = request.match_info["realm"]
        record = self._get(kind, realm, request.match_info["id"]) if kind else None
        if kind is None or record is None:
            return self.error_response(400, "610", "Object Not Found",
                                       "Something you're trying to use has been made inactive "
                                       "or is no longer available.")
        return web.json_response(self._wrap(kind, record))

    def run_query(self, realm: str, statement: str) -> dict[str, Any]:
        """Answer a query statement (raises _QueryError for what Intuit refuses)."""
        m = _QUERY.match(statement)
        if m is None:
            raise _QueryError("Error parsing query")
        kind = next((k for k in _COLLECTION if k.lower() == m["entity"].lower()), None)
        if kind is None:
            raise _QueryError(f"Invalid entity {m['entity']}")
        rows = self._all(kind, realm)
        if kind in ("Item", "Customer", "Vendor", "Account") and "active" not in (
                m["where"] or "").lower():
            # Like Intuit: inactive names are hidden unless the query asks about Active.
            rows = [r for r in rows if r.get("Active", True) is not False]
        if m["where"]:
            if re.search(r"\bor\b", _STRING.sub("''", m["where"]), re.IGNORECASE):
                raise _QueryError("OR is not supported")
            conds = _split_and(m["where"])
            rows = [r for r in rows if all(_matches(r, c) for c in conds)]
        if m["what"] != "*":
            return {"QueryResponse": {"totalCount": len(rows)}, "time": _now()}
        rows.sort(key=lambda r: int(r["Id"]))
        if m["order"]:
            rows.sort(key=lambda r: str(_field_value(r, m["order"]) or ""),
                      reverse=(m["dir"] or "").lower() == "desc")
        start = int(m["start"] or 1)
        limit = int(m["max"] or 100)
        if start < 1 or limit < 1 or limit > QUERY_PAGE_MAX:
            raise _QueryError(f"MAXRESULTS must be between 1 and {QUERY_PAGE_MAX}")
        page = rows[start - 1:start - 1 + limit]
        body: dict[str, Any] = {"startPosition": start, "maxResults": len(page)}
        if page:
            body[kind] = [self.public(r) for r in page]
        return {"QueryResponse": body, "time": _now()}

    async def _query_route(self, request: web.Request) -> web.Response:
        problem = self._common(request)
        if problem is not None:
            return problem
        statement = (request.query.get("query") if request.method == "GET"
                     else await request.text()) or ""
        try:
            return web.json_response(self.run_query(request.match_info["realm"], statement))
        except _QueryError as exc:
            return self.error_response(400, "4000", "Error parsing query",
                                       f"QueryParserError: {exc}")

    async def _cdc(self, request: web.Request) -> web.Response:
        problem = self._common(request)
        if problem is not None:
            return problem
        realm = request.match_info["realm"]
        try:
            since = datetime.fromisoformat(
                request.query.get("changedSince", "").replace("Z", "+00:00"))
        except ValueError:
            return self.error_response(400, "4000", "Invalid changedSince")
        kinds = [k.strip() for k in request.query.get("entities", "").split(",") if k.strip()]
        blocks = []
        for name in kinds:
            kind = next((k for k in _WRITABLE if k.lower() == name.lower()), None)
            if kind is None:
                return self.error_response(400, "4000", f"Invalid entity {name}")
            rows = [self.public(r) for r in self._all(kind, realm)
                    if datetime.fromisoformat(r["MetaData"]["LastUpdatedTime"]) >= since]
            rows += [d for d in self._deleted if d["_kind"] == kind and d["_realm"] == realm
                     and datetime.fromisoformat(d["MetaData"]["LastUpdatedTime"]) >= since]
            rows = [{k: v for k, v in r.items() if not k.startswith("_")} for r in rows]
            blocks.append({kind: rows, "startPosition": 1, "maxResults": len(rows)})
        return web.json_response({"CDCResponse": [{"QueryResponse": blocks}], "time": _now()})

    # --- writes ---------------------------------------------------------------------------

    def _name_clash(self, kind: str, realm: str, body: Mapping[str, Any],
                    own_id: str | None) -> bool:
        if kind == "Customer":
            name = str(body.get("DisplayName") or "").casefold()
            pool = self._all("Customer", realm) + self._all("Vendor", realm)
            return any(str(r.get("DisplayName", "")).casefold() == name and r["Id"] != own_id
                       for r in pool)
        if kind == "Item":
            name = str(body.get("Name") or "").casefold()
            return any(str(r.get("Name", "")).casefold() == name and r["Id"] != own_id
                       for r in self._all("Item", realm))
        return False

    def _validate(self, kind: str, realm: str, body: dict[str, Any],
                  own_id: str | None) -> dict[str, Any] | None:
        """A Fault for a bad entity, else None (and fills derived fields)."""
        if kind == "Customer":
            if not body.get("DisplayName"):
                parts = [body.get("GivenName"), body.get("FamilyName")]
                body["DisplayName"] = " ".join(str(p) for p in parts if p) or None
            if not body.get("DisplayName"):
                return self._fault("2020", "Required param missing, need to supply the "
                                   "required value for the API", "Required parameter "
                                   "DisplayName is missing in the request", element="DisplayName")
            email = (body.get("PrimaryEmailAddr") or {}).get("Address")
            if email is not None and not re.fullmatch(r"[^@\s]+@[^@\s]+\.[^@\s]+", str(email)):
                return self._fault("2050", "Invalid Email Address format",
                                   f"Email Address does not conform to the syntax rules of RFC "
                                   f"822: {str(email)[:100]}", element="PrimaryEmailAddr")
            if len(str(body["DisplayName"])) > 500:
                return self._fault("6000", "A business validation error has occurred",
                                   "DisplayName is longer than 500 characters")
        elif kind == "Item":
            if not body.get("Name"):
                return self._fault("2020", "Required param missing, need to supply the "
                                   "required value for the API", "Required parameter Name is "
                                   "missing in the request", element="Name")
            if ":" in str(body["Name"]) or len(str(body["Name"])) > 100:
                return self._fault("2050", "Invalid Name", "Name cannot contain a colon or "
                                   "be longer than 100 characters", element="Name")
            body.setdefault("Type", "Service")
            ref = (body.get("IncomeAccountRef") or {}).get("value")
            if ref is None and own_id is None:
                return self._fault("2020", "Required param missing, need to supply the "
                                   "required value for the API", "Required parameter "
                                   "IncomeAccountRef is missing in the request",
                                   element="IncomeAccountRef")
            if ref is not None and self._get("Account", realm, str(ref)) is None:
                return self._fault("2500", "Invalid Reference Id", "Invalid Reference Id : "
                                   f"Accounts element id {ref} not found")
        else:
            lines = body.get("Line")
            if not isinstance(lines, list) or not lines:
                return self._fault("2020", "Required param missing, need to supply the "
                                   "required value for the API", "Required parameter Line is "
                                   "missing in the request", element="Line")
            total = 0.0
            for line in lines:
                detail = line.get("SalesItemLineDetail") if isinstance(line, Mapping) else None
                item = (detail or {}).get("ItemRef", {}).get("value")
                if item is None or self._get("Item", realm, str(item)) is None:
                    return self._fault("2500", "Invalid Reference Id",
                                       f"Invalid Reference Id : Item element id {item} not "
                                       "found")
                amount = line.get("Amount")
                if not isinstance(amount, int | float):
                    return self._fault("2020", "Required param missing", "Line Amount is "
                                       "required", element="Amount")
                qty, unit = (detail or {}).get("Qty"), (detail or {}).get("UnitPrice")
                if (isinstance(qty, int | float) and isinstance(unit, int | float)
                        and abs(qty * unit - amount) > 0.005):
                    return self._fault("6070", "Amount is not equal to UnitPrice * Qty",
                                       f"Amount {amount} is not equal to {unit} * {qty}")
                total += float(amount)
            customer = (body.get("CustomerRef") or {}).get("value")
            if kind == "Invoice" and customer is None:
                return self._fault("2020", "Required param missing", "Required parameter "
                                   "CustomerRef is missing in the request",
                                   element="CustomerRef")
            if customer is not None and self._get("Customer", realm, str(customer)) is None:
                return self._fault("2500", "Invalid Reference Id", "Invalid Reference Id : "
                                   f"Names element id {customer} not found")
            body["TotalAmt"] = round(total, 2)
            if kind == "Invoice":
                body.setdefault("Balance", round(total, 2))
        if self._name_clash(kind, realm, body, own_id):
            return self._fault("6240", "Duplicate Name Exists Error",
                               "The name supplied already exists. : Another customer, vendor "
                               "or employee is already using this name. Please use a "
                               "different name." if kind == "Customer" else
                               "The name supplied already exists. : Another product or "
                               "service is already using this name.")
        return None

    def apply(self, kind: str, realm: str, operation: str,
              body: Any) -> tuple[int, dict[str, Any]]:
        """One create, update or delete; returns (HTTP status, answer body)."""
        if not isinstance(body, Mapping):
            return 400, self._fault("2010", "Request has invalid or unsupported property")
        body = dict(body)
        for key in ("MetaData", "domain", "TotalAmt", "Balance", "id"):
            body.pop(key, None)
        if operation == "delete":
            record = self._get(kind, realm, str(body.get("Id")))
            if kind not in ("SalesReceipt", "Invoice"):
                return 400, self._fault("6000", "A business validation error has occurred",
                                        f"{kind} cannot be deleted; make it inactive")
            if record is None:
                return 400, self._fault("610", "Object Not Found")
            if str(body.get("SyncToken")) != record["SyncToken"]:
                return 400, self._stale()
            self.collection(_COLLECTION[kind]).pop(self._key(realm, record["Id"]), None)
            tomb = {"Id": record["Id"], "status": "Deleted", "_kind": kind, "_realm": realm,
                    "MetaData": {**record["MetaData"], "LastUpdatedTime": _now()}}
            self._deleted.append(tomb)
            self.notify_change(_COLLECTION[kind], record["Id"], "deleted")
            return 200, {kind: {"Id": record["Id"], "status": "Deleted", "domain": "QBO"},
                         "time": _now()}
        if operation == "update" or body.get("Id") is not None:
            record = self._get(kind, realm, str(body.get("Id")))
            if record is None:
                return 400, self._fault("610", "Object Not Found",
                                        "Something you're trying to use has been made inactive "
                                        "or is no longer available.")
            if "SyncToken" not in body:
                return 400, self._fault("2020", "Required param missing", "Required parameter "
                                        "SyncToken is missing in the request",
                                        element="SyncToken")
            if str(body["SyncToken"]) != record["SyncToken"]:
                return 400, self._stale()
            merged = {**(self.public(record) if body.get("sparse") else {
                "Id": record["Id"]}), **body}
            fault = self._validate(kind, realm, merged, record["Id"])
            if fault is not None:
                return 400, fault
            merged.pop("sparse", None)
            record.update(merged)
            record["SyncToken"] = str(int(record["SyncToken"]) + 1)
            record["MetaData"] = {**record["MetaData"], "LastUpdatedTime": _now()}
            self.put(_COLLECTION[kind], self._key(realm, record["Id"]), record,
                     change="updated")
            return 200, self._wrap(kind, record)
        fault = self._validate(kind, realm, body, None)
        if fault is not None:
            return 400, fault
        body.pop("sparse", None)
        return 200, self._wrap(kind, self._insert(kind, realm, body))

    def _stale(self) -> dict[str, Any]:
        return self._fault("5010", "Stale Object Error : You and another user were working "
                           "on the same thing.", "Stale Object Error : You and another user "
                           "were working on the same thing. Please try again.")

    async def _write(self, request: web.Request) -> web.Response:
        problem = self._common(request)
        if problem is not None:
            return problem
        kind = _KINDS.get(self._entity_name(request))
        if kind not in _WRITABLE:
            return self.error_response(400, "4000", "Unsupported entity")
        realm = request.match_info["realm"]
        try:
            body = await request.json()
        except ValueError:
            return self.error_response(400, "2010", "Request has invalid or unsupported "
                                       "property")
        operation = request.query.get("operation", "create")

        async def handle() -> web.Response:
            status, answer = self.apply(kind, realm, operation, body)
            return web.json_response(answer, status=status)

        # Intuit replays the first answer for a repeated requestid, whatever the body.
        return await self.idempotent(request, request.query.get("requestid"), kind, handle)

    async def _batch(self, request: web.Request) -> web.Response:
        problem = self._common(request, batch=True)
        if problem is not None:
            return problem
        realm = request.match_info["realm"]
        try:
            body = await request.json()
        except ValueError:
            return self.error_response(400, "2010", "Request has invalid or unsupported "
                                       "property")
        items = body.get("BatchItemRequest") if isinstance(body, Mapping) else None
        if not isinstance(items, list) or not items:
            return self.error_response(400, "2020", "Required param missing",
                                       "BatchItemRequest is required")
        request[BATCH_SIZE] = len(items)
        if len(items) > BATCH_MAX:
            return self.error_response(400, "1040", "Batch size exceeds allowed limit",
                                       f"The batch limit size is {BATCH_MAX}; it had "
                                       f"{len(items)}.")
        bids = [str(i.get("bId", "")) if isinstance(i, Mapping) else "" for i in items]
        if any(not b or len(b) > 10 for b in bids) or len(set(bids)) != len(bids):
            return self.error_response(400, "4000", "Invalid bId",
                                       "Each bId must be unique and at most 10 characters.")

        faults = request.get(_ITEM_FAULTS) or {}

        async def handle() -> web.Response:
            answers = [{"bId": str(item["bId"]), "Fault": {"Error": faults[i],
                                                           "type": "ValidationFault"}}
                       if i in faults else self._batch_item(realm, item)
                       for i, item in enumerate(items)]
            return web.json_response({"BatchItemResponse": answers, "time": _now()})

        return await self.idempotent(request, request.query.get("requestid"), "batch", handle)

    def _batch_item(self, realm: str, item: Mapping[str, Any]) -> dict[str, Any]:
        bid = str(item["bId"])
        if "Query" in item:
            try:
                answer = self.run_query(realm, str(item["Query"]))
            except _QueryError as exc:
                return {"bId": bid, **self._fault("4000", "Error parsing query", str(exc))}
            return {"bId": bid, "QueryResponse": answer["QueryResponse"]}
        kinds = [k for k in item if k in _WRITABLE]
        if len(kinds) != 1:
            return {"bId": bid, "Fault": self._fault(
                "2010", "Request has invalid or unsupported property")["Fault"]}
        kind = kinds[0]
        operation = str(item.get("operation", "create"))
        if operation not in ("create", "update", "delete"):
            return {"bId": bid, "Fault": self._fault("2010", "Invalid operation")["Fault"]}
        status, answer = self.apply(kind, realm, operation, item[kind])
        if status >= 400:
            return {"bId": bid, "Fault": answer["Fault"]}
        return {"bId": bid, kind: answer[kind]}
