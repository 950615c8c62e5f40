"""A local Mailchimp Marketing API: audience members, e-commerce store, OAuth, webhooks.

Every request is first checked against Mailchimp's published Marketing API description
(``spec/marketing.json`` beside this module, see its README and docs/emulators.md): unknown
query parameters and body fields at any depth, missing required ones, types, enums (member
``status``), lengths and ranges are refused with 400 "Invalid Resource" and an ``errors``
entry per problem; an unknown URL is 404 "Resource Not Found".

Shapes follow the documented ones: problem+json errors (``type``, ``title``, ``status``,
``detail``, ``instance``, optional ``errors[]``); batch subscribe answers ``new_members``,
``updated_members``, ``errors``, ``total_created``, ``total_updated``, ``error_count``; pages
take ``count`` (at most 1000) and ``offset`` and answer ``total_items``. Authentication is
HTTP Basic with any user name and an API key ending in ``-<dc>``, or an OAuth token
(``Bearer`` or ``OAuth``) that never expires.
At most 10 simultaneous connections per user; beyond that a 429, sometimes with no JSON body.
Mailchimp documents no Retry-After, so none is sent.

Collections: ``customer`` (members), ``product``, ``transaction`` (orders), plus ``list``,
``store`` and ``ecommerce_customer``.
"""

from __future__ import annotations

import base64
import copy
import functools
import secrets
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from aiohttp import web

from daemon.provider import EmulatorSettings
from daemon.testing.emulator import ACCOUNT, BATCH_SIZE, Emulator, Token
from daemon.testing.openapi import (
    Description,
    Problem,
    UnknownPath,
    audit_responses,
    check_request,
    load_description,
)
from plugins.mailchimp.webhooks import encode_form, sign, subscriber_hash

__all__ = ["DEFAULT_DC", "DEFAULT_LIST_ID", "DEFAULT_STORE_ID", "DESCRIPTION",
           "MailchimpEmulator", "description"]

DEFAULT_DC = "us6"
DEFAULT_LIST_ID = "a1b2c3d4e5"
DEFAULT_STORE_ID = "syncd-store"
# Mailchimp's documented limits, the emulator's own (never the plugin's). Source:
# shared/reference/providers.md (Mailchimp): batch subscribe takes up to 500 members per call
# (the official SDKs' model docs); member lists page with count, max 1000.
BATCH_SUBSCRIBE_MAX = 500
MEMBER_PAGE_MAX = 1000
_ERROR_DOC = "https://mailchimp.com/developer/marketing/docs/errors/"
_STATUSES = frozenset({"subscribed", "unsubscribed", "cleaned", "pending", "transactional"})
_MAX_CONNECTIONS = 10

Handler = Callable[[web.Request], Awaitable[web.Response]]
#: Mailchimp's Marketing API description (an extract: spec/README.md says which).
DESCRIPTION = Path(__file__).resolve().parent / "spec" / "marketing.json"
_INVALID_DETAIL = ("The resource submitted could not be validated. For field-specific "
                   "details, see the 'errors' array.")


#: Where version 3.0.55 of the description lags the live API, with the source of each
#: correction. Batch subscribe (``POST /lists/{list_id}``) takes ``sync_tags`` in 3.0.55,
#: which replaces a member's tags with "the tags being passed in the request", yet its
#: member objects list no ``tags``: Mailchimp's release note "Added ability to sync tags to
#: existing members" (2022-01-24, mailchimp.com/developer/release-notes/) says tags sent in
#: bulk through the Lists endpoint are added to new and existing members. The member
#: object's ``tags`` is an array of tag names, as on ``POST /lists/{list_id}/members``.
_BATCH_MEMBER_TAGS = {"type": "array", "items": {"type": "string"},
                      "description": "Tag names for the member (release note 2022-01-24)."}


@functools.cache
def description() -> Description:
    """Mailchimp's published description with the corrections above, once per process."""
    document = copy.deepcopy(dict(load_description(DESCRIPTION)))
    body = document["paths"]["/lists/{list_id}"]["post"]["requestBody"]
    member = body["content"]["application/json"]["schema"]["properties"]["members"]["items"]
    member["properties"].setdefault("tags", _BATCH_MEMBER_TAGS)
    return Description(document, name="mailchimp", base_path="/3.0")


def _field(path: tuple[str | int, ...]) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _json_type(value: Any) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "integer" if isinstance(value, int) else "number"
    if isinstance(value, dict):
        return "object"
    if isinstance(value, list):
        return "array"
    return "string" if isinstance(value, str) else "value"


def _message(problem: Problem) -> str:
    """One problem, worded as Mailchimp's validation errors are."""
    kind, expected, value = problem.kind, problem.expected, problem.value
    if kind == "unknown":
        where = "query parameter" if problem.location == "query" else "field"
        return f"Schema does not describe this {where}."
    if kind == "missing":
        return f"Required fields were not provided: {problem.path[-1] if problem.path else ''}"
    if kind == "type":
        return (f"Schema describes {expected.replace('|', ' or ')}, {_json_type(value)} "
                "found instead.")
    if kind == "enum":
        return f"Schema describes enum, {value!r} is not an allowed value ({expected})."
    if kind in ("too_long", "too_short"):
        bound = "at most" if kind == "too_long" else "at least"
        return f"Schema describes a string of {bound} {expected} characters."
    if kind in ("too_large", "too_small"):
        bound = "at most" if kind == "too_large" else "at least"
        return f"Schema describes a number of {bound} {expected}."
    if kind in ("too_many", "too_few"):
        bound = "at most" if kind == "too_many" else "at least"
        return f"Schema describes an array of {bound} {expected} items."
    if kind == "read_only":
        return "This field is read-only."
    if kind == "pattern":
        return f"Value does not match the pattern {expected}."
    return "The request body is not valid JSON."


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


class MailchimpEmulator(Emulator):
    """Mailchimp Marketing API v3.0, the parts syncd uses."""

    name = "mailchimp"
    default_account = "mc-account-1"
    credential_kind = "api_key"

    def __init__(self, settings: EmulatorSettings | None = None) -> None:
        self._connections: dict[str, int] = {}
        self._codes: dict[str, tuple[str, str]] = {}  # code -> (account, redirect_uri)
        self._member_seq = 0
        super().__init__(settings)
        #: Mailchimp's published description every request is checked against.
        self.description: Description = description()
        self.on_reset()

    # --- base hooks ---------------------------------------------------------------------

    def _issue_default_token(self) -> Token:
        key = f"{secrets.token_hex(16)}-{DEFAULT_DC}"
        return self.tokens.add(Token(key, self.default_account, "access"))

    def default_account_facts(self) -> dict[str, str]:
        return {"account": self.default_account, "list_id": DEFAULT_LIST_ID,
                "store_id": DEFAULT_STORE_ID, "dc": DEFAULT_DC}

    def on_reset(self) -> None:
        self._connections.clear()
        self.put("list", DEFAULT_LIST_ID, {
            "id": DEFAULT_LIST_ID, "name": "Ticket buyers", "account": self.default_account,
            "stats": {"member_count": 0}, "date_created": _now()})
        self.put("store", DEFAULT_STORE_ID, {
            "id": DEFAULT_STORE_ID, "list_id": DEFAULT_LIST_ID, "name": "Tickets",
            "currency_code": "USD", "platform": "syncd", "account": self.default_account,
            "created_at": _now()})

    def provision(self, kind: str, rid: str, attrs: Mapping[str, Any]) -> dict[str, Any] | None:
        if kind != "list":
            return None
        record = {"id": rid, "name": str(attrs.get("name", "Ticket buyers")),
                  "account": self.default_account, "stats": {"member_count": 0},
                  "date_created": _now()}
        self.put("list", rid, record)
        return record

    def rate_limit(self) -> tuple[float, float]:
        # Mailchimp documents connections, not a rate; a bucket of 25/s (the client's
        # smoothing rate) stands in for it so rate_limit_scale can provoke 429s, and
        # connections are counted as well.
        return (25.0, 25.0)

    def connection_limit(self) -> int | None:
        return _MAX_CONNECTIONS  # per user, counted from arrival to answer by the base

    def error_response(self, status: int, code: str, message: str,
                       errors: list[dict[str, str]] | None = None) -> web.Response:
        body: dict[str, Any] = {"type": _ERROR_DOC, "title": code, "status": status,
                                "detail": message, "instance": secrets.token_hex(8)}
        if errors:
            body["errors"] = errors
        return web.json_response(body, status=status, content_type="application/problem+json")

    def unauthorized_response(self) -> web.Response:
        return self.error_response(401, "API Key Invalid", "Your API key may be invalid, or "
                                   "you've attempted to access the wrong datacenter.")

    def rate_limited_response(self, retry_after: float) -> web.Response:
        if self.rng.random() < 0.3:  # at high volume the 429 can come with no JSON body
            return web.Response(status=429, text="", content_type="text/html")
        return self.error_response(429, "Too Many Requests", "You have exceeded the limit of "
                                   "10 simultaneous connections.")

    def server_error_response(self) -> web.Response:
        return self.error_response(500, "Internal Server Error", "An unexpected internal error "
                                   "has occurred. Please contact Support for more information.")

    def is_public(self, request: web.Request) -> bool:
        return request.path.startswith("/oauth2/")

    async def check_request(self, request: web.Request) -> web.Response | None:
        """Refuse what Mailchimp refuses, as it words it: 400 "Invalid Resource" with an
        ``errors`` entry per problem against the description; 404 for an unknown URL."""
        if not self.settings.strict:
            return None
        try:
            problems = await check_request(self.description, request)
        except UnknownPath:
            if request.match_info.http_exception is None:
                return None  # emulated, not in the description (the OAuth pages)
            return self._not_found()
        if not problems:
            return None
        if problems[0].kind == "body":
            return self.error_response(400, "JSON Parse Exception", "We encountered an "
                                       "unspecified JSON parsing error.")
        return self._invalid(_INVALID_DETAIL, [
            {"field": _field(p.path), "message": _message(p)} for p in problems])

    def app(self) -> web.Application:
        app = super().app()
        audit_responses(app, self.description)
        return app

    def authenticate(self, request: web.Request) -> str | None:
        header = request.headers.get("Authorization", "")
        scheme, _, value = header.partition(" ")
        value = value.strip()
        if scheme.lower() == "basic":
            try:
                _, _, key = base64.b64decode(value, validate=True).decode().partition(":")
            except (ValueError, UnicodeDecodeError):
                return None
            token = self.tokens.lookup(key)
        elif scheme.lower() in ("bearer", "oauth"):
            token = self.tokens.lookup(value)
        else:
            return None
        return token.account if token else None

    def sign_webhook(self, body: bytes, url: str, timestamp: int) -> dict[str, str]:
        return {"X-Mailchimp-Signature": sign(body, self.settings.webhook_secret, timestamp),
                "Content-Type": "application/x-www-form-urlencoded"}

    def webhook_event(self, collection: str, record_id: str, change: str) -> bytes:
        member = (self._find_member(record_id.rsplit("/", 1)[-1])
                  if collection == "customer" else None)
        kind = {"created": "subscribe", "subscribed": "subscribe",
                "deleted": "unsubscribe", "unsubscribed": "unsubscribe"}.get(change, "profile")
        fired = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S")
        if member is None:
            data: dict[str, Any] = {"id": record_id, "list_id": DEFAULT_LIST_ID}
            kind = "campaign" if collection != "customer" else kind
        else:
            merges = {"EMAIL": member["email_address"], **member.get("merge_fields", {})}
            data = {"id": member["unique_email_id"], "list_id": member["list_id"],
                    "email": member["email_address"], "email_type": "html",
                    "ip_opt": "127.0.0.1", "merges": merges}
            if kind == "unsubscribe":
                data["reason"] = "manual"
                data["action"] = "unsub"
        return urlencode(encode_form({"type": kind, "fired_at": fired, "data": data})).encode()

    # --- routes -------------------------------------------------------------------------

    def routes(self) -> list[web.RouteDef]:
        w = self._connection_limited
        lp = "/3.0/lists/{list_id}"
        sp = "/3.0/ecommerce/stores/{store_id}"
        return [
            web.get("/oauth2/authorize", self._oauth_authorize),
            web.post("/oauth2/token", self._oauth_token),
            web.get("/oauth2/metadata", self._oauth_metadata),
            web.get("/3.0/", w(self._root)),
            web.get("/3.0/ping", w(self._ping)),
            web.get(lp, w(self._get_list)),
            web.post(lp, w(self._batch_subscribe)),
            web.get(lp + "/members", w(self._list_members)),
            web.post(lp + "/members", w(self._create_member)),
            web.get(lp + "/members/{hash}", w(self._get_member)),
            web.put(lp + "/members/{hash}", w(self._put_member)),
            web.patch(lp + "/members/{hash}", w(self._patch_member)),
            web.delete(lp + "/members/{hash}", w(self._archive_member)),
            web.post(lp + "/members/{hash}/tags", w(self._member_tags)),
            web.post("/3.0/ecommerce/stores", w(self._create_store)),
            web.get(sp, w(self._get_store)),
            web.get(sp + "/products/{product_id}", w(self._get_product)),
            web.put(sp + "/products/{product_id}", w(self._put_product)),
            web.delete(sp + "/products/{product_id}", w(self._delete_product)),
            web.post(sp + "/orders", w(self._create_order)),
            web.get(sp + "/orders/{order_id}", w(self._get_order)),
            web.patch(sp + "/orders/{order_id}", w(self._patch_order)),
            web.delete(sp + "/orders/{order_id}", w(self._delete_order)),
        ]

    def _connection_limited(self, handler: Handler) -> Handler:
        async def wrapped(request: web.Request) -> web.Response:
            account = request.get(ACCOUNT) or "anonymous"
            limit = max(1, int(_MAX_CONNECTIONS * self.settings.rate_limit_scale))
            if self.settings.enforce_rate_limits and self._connections.get(account, 0) >= limit:
                return self.rate_limited_response(1.0)
            self._connections[account] = self._connections.get(account, 0) + 1
            try:
                return await handler(request)
            finally:
                self._connections[account] -= 1
        return wrapped

    # --- helpers ------------------------------------------------------------------------

    def _not_found(self, what: str = "resource") -> web.Response:
        return self.error_response(404, "Resource Not Found",
                                   f"The requested {what} could not be found.")

    def _invalid(self, detail: str, errors: list[dict[str, str]] | None = None) -> web.Response:
        return self.error_response(400, "Invalid Resource", detail, errors)

    async def _json(self, request: web.Request) -> Any:
        try:
            return await request.json()
        except ValueError:
            return None

    def _list(self, request: web.Request) -> dict[str, Any] | None:
        lst = self.collection("list").get(request.match_info["list_id"])
        if lst is None or lst.get("account") != request.get(ACCOUNT):
            return None
        return lst

    def _store(self, request: web.Request) -> dict[str, Any] | None:
        store = self.collection("store").get(request.match_info["store_id"])
        if store is None or store.get("account") != request.get(ACCOUNT):
            return None
        return store

    def _find_member(self, member_hash: str) -> dict[str, Any] | None:
        for member in self.collection("customer").values():
            if member["id"] == member_hash:
                return member
        return None

    def _member(self, list_id: str, member_hash: str) -> dict[str, Any] | None:
        return self.collection("customer").get(f"{list_id}/{member_hash}")

    def _member_error(self, body: Mapping[str, Any]) -> tuple[str, str] | None:
        email = body.get("email_address")
        if not isinstance(email, str) or "@" not in email or "." not in email.split("@")[-1]:
            return ("email_address", "Please provide a valid email address.")
        for key in ("status", "status_if_new"):
            if key in body and body[key] not in _STATUSES:
                return (key, f"Schema describes enum, {body[key]!r} is not an allowed value.")
        merges = body.get("merge_fields")
        if merges is not None and not isinstance(merges, Mapping):
            return ("merge_fields", "Schema describes object, another type was found.")
        return None

    def _new_member(self, list_id: str, body: Mapping[str, Any], status: str,
                    change: bool = True) -> dict[str, Any]:
        email = str(body["email_address"]).strip()
        self._member_seq += 1
        member = {
            "id": subscriber_hash(email),
            "email_address": email,
            "unique_email_id": secrets.token_hex(5),
            "contact_id": f"c{self._member_seq:08d}",
            "status": status,
            "merge_fields": dict(body.get("merge_fields") or {}),
            "language": body.get("language", ""),
            "vip": bool(body.get("vip", False)),
            "tags": [{"id": i + 1, "name": str(t)} for i, t in enumerate(body.get("tags") or [])],
            "list_id": list_id,
            "timestamp_opt": _now(),
            "last_changed": _now(),
        }
        self.put("customer", f"{list_id}/{member['id']}", member)
        if change:
            self.notify_change("customer", member["id"], "created")
        return member

    def _update_member(self, member: dict[str, Any], body: Mapping[str, Any],
                       *, status: str | None) -> dict[str, Any]:
        list_id = member["list_id"]
        old_key = f"{list_id}/{member['id']}"
        new_email = str(body.get("email_address") or member["email_address"]).strip()
        if new_email.lower() != member["email_address"].lower():
            self.collection("customer").pop(old_key, None)
            member["id"] = subscriber_hash(new_email)
        member["email_address"] = new_email
        if body.get("merge_fields"):
            member["merge_fields"] = {**member["merge_fields"], **body["merge_fields"]}
        for key in ("language", "vip"):
            if key in body:
                member[key] = body[key]
        if status is not None:
            member["status"] = status
        member["last_changed"] = _now()
        self.put("customer", f"{list_id}/{member['id']}", member)
        self.notify_change("customer", member["id"], "updated")
        return member

    @staticmethod
    def _public(member: Mapping[str, Any]) -> dict[str, Any]:
        return dict(member)

    # --- OAuth --------------------------------------------------------------------------

    async def _oauth_authorize(self, request: web.Request) -> web.Response:
        q = request.query
        if q.get("response_type") != "code" or not q.get("client_id") or not q.get(
                "redirect_uri"):
            return web.Response(status=400, text="invalid authorize request")
        code = secrets.token_hex(16)
        self._codes[code] = (self.default_account, q["redirect_uri"])
        params = {"code": code}
        if q.get("state"):
            params["state"] = q["state"]
        raise web.HTTPFound(f"{q['redirect_uri']}?{urlencode(params)}")

    async def _oauth_token(self, request: web.Request) -> web.Response:
        form = await request.post()
        if form.get("grant_type") != "authorization_code":
            return web.json_response({"error": "unsupported_grant_type"}, status=400)
        if not form.get("client_id") or not form.get("client_secret"):
            return web.json_response({"error": "invalid_client"}, status=401)
        issued = self._codes.pop(str(form.get("code", "")), None)
        if issued is None or issued[1] != form.get("redirect_uri"):
            return web.json_response({"error": "invalid_grant"}, status=400)
        token = self.tokens.issue_access(issued[0], None, prefix="mcoauth")
        # Mailchimp tokens never expire: expires_in 0, no refresh token, no scope.
        return web.json_response({"access_token": token.value, "expires_in": 0,
                                  "scope": None})

    async def _oauth_metadata(self, request: web.Request) -> web.Response:
        scheme, _, value = request.headers.get("Authorization", "").partition(" ")
        token = self.tokens.lookup(value.strip()) if scheme.lower() == "oauth" else None
        if token is None:
            return web.json_response({"error": "invalid_token"}, status=401)
        host = f"{request.scheme}://{request.host}"
        return web.json_response({"dc": DEFAULT_DC, "role": "owner",
                                  "accountname": "Emulated venue", "user_id": 1,
                                  "login": {"login_id": 1, "login_name": "venue"},
                                  "login_url": "https://login.mailchimp.com",
                                  "api_endpoint": host})

    # --- account and lists --------------------------------------------------------------

    async def _root(self, request: web.Request) -> web.Response:
        return web.json_response({"account_id": request.get(ACCOUNT),
                                  "account_name": "Emulated venue", "email": "owner@example.com",
                                  "role": "owner"})

    async def _ping(self, request: web.Request) -> web.Response:
        return web.json_response({"health_status": "Everything's Chimpy!"})

    async def _get_list(self, request: web.Request) -> web.Response:
        lst = self._list(request)
        if lst is None:
            return self._not_found("list")
        count = sum(1 for m in self.collection("customer").values() if m["list_id"] == lst["id"])
        return web.json_response({**lst, "stats": {"member_count": count}})

    async def _batch_subscribe(self, request: web.Request) -> web.Response:
        lst = self._list(request)
        if lst is None:
            return self._not_found("list")
        body = await self._json(request)
        members = body.get("members") if isinstance(body, Mapping) else None
        if not isinstance(members, list):
            return self._invalid("The resource submitted could not be validated.",
                                 [{"field": "members", "message": "Required property missing."}])
        request[BATCH_SIZE] = len(members)
        if len(members) > BATCH_SUBSCRIBE_MAX:
            return self._invalid(
                "The resource submitted could not be validated. For field-specific details, "
                "see the 'errors' array.",
                [{"field": "members",
                  "message": f"Schema describes array, maximum {BATCH_SUBSCRIBE_MAX} items."}])
        update = bool(body.get("update_existing", False))
        new, updated, errors = [], [], []
        for raw in members:
            if not isinstance(raw, Mapping):
                errors.append({"email_address": "", "error": "Invalid member",
                               "error_code": "ERROR_GENERIC"})
                continue
            problem = self._member_error(raw) or (
                None if raw.get("status") in _STATUSES else ("status", "Status is required."))
            email = str(raw.get("email_address", ""))
            if problem is not None:
                errors.append({"email_address": email, "error": problem[1],
                               "error_code": "ERROR_GENERIC", "field": problem[0]})
                continue
            existing = self._member(lst["id"], subscriber_hash(email))
            if existing is None:
                new.append(self._new_member(lst["id"], raw, str(raw["status"])))
            elif update:
                updated.append(self._update_member(existing, raw, status=str(raw["status"])))
            else:
                errors.append({"email_address": email,
                               "error": f"{email} is already a list member, do you want to "
                               "update? please provide update_existing:true in the request "
                               "body", "error_code": "ERROR_CONTACT_EXISTS"})
        return web.json_response({
            "new_members": new, "updated_members": updated, "errors": errors,
            "total_created": len(new), "total_updated": len(updated),
            "error_count": len(errors)})

    async def _list_members(self, request: web.Request) -> web.Response:
        lst = self._list(request)
        if lst is None:
            return self._not_found("list")
        try:
            count = int(request.query.get("count", "10"))
            offset = int(request.query.get("offset", "0"))
        except ValueError:
            return self._invalid("count and offset must be integers.")
        if count > MEMBER_PAGE_MAX or count < 0 or offset < 0:
            return self._invalid(f"count must be between 0 and {MEMBER_PAGE_MAX}.")
        since = request.query.get("since_last_changed")
        status = request.query.get("status")
        members = [m for m in self.collection("customer").values() if m["list_id"] == lst["id"]]
        if since:
            try:
                cutoff = datetime.fromisoformat(since.replace("Z", "+00:00"))
            except ValueError:
                return self._invalid("since_last_changed must be an ISO 8601 time.")
            members = [m for m in members
                       if datetime.fromisoformat(m["last_changed"]) >= cutoff]
        if status:
            members = [m for m in members if m["status"] == status]
        members.sort(key=lambda m: (m["last_changed"], m["contact_id"]))
        page = members[offset:offset + count]
        return web.json_response({"members": page, "list_id": lst["id"],
                                  "total_items": len(members)})

    async def _member_call(self, request: web.Request
                           ) -> tuple[dict[str, Any], Mapping[str, Any]] | web.Response:
        """The list and the checked member body of a create or upsert, or Mailchimp's error."""
        lst = self._list(request)
        if lst is None:
            return self._not_found("list")
        body = await self._json(request)
        if not isinstance(body, Mapping):
            return self._invalid("The request body is not valid JSON.")
        problem = self._member_error(body)
        if problem is not None:
            return self._invalid(problem[1], [{"field": problem[0], "message": problem[1]}])
        return lst, body

    async def _create_member(self, request: web.Request) -> web.Response:
        found = await self._member_call(request)
        if isinstance(found, web.Response):
            return found
        lst, body = found
        if body.get("status") not in _STATUSES:
            return self._invalid("Status is required.", [{"field": "status",
                                                          "message": "Status is required."}])
        email = str(body["email_address"])
        if self._member(lst["id"], subscriber_hash(email)) is not None:
            return self.error_response(400, "Member Exists", f"{email} is already a list "
                                       "member. Use PUT to insert or update list members.")
        return web.json_response(self._new_member(lst["id"], body, str(body["status"])))

    async def _get_member(self, request: web.Request) -> web.Response:
        lst = self._list(request)
        member = self._member(lst["id"], self._hash_of(request)) if lst else None
        if member is None:
            return self._not_found("member")
        return web.json_response(member)

    @staticmethod
    def _hash_of(request: web.Request) -> str:
        value = request.match_info["hash"]
        return subscriber_hash(value) if "@" in value else value.lower()

    async def _put_member(self, request: web.Request) -> web.Response:
        found = await self._member_call(request)
        if isinstance(found, web.Response):
            return found
        lst, body = found
        member = self._member(lst["id"], self._hash_of(request))
        if member is not None and member["status"] == "archived":
            # An archived contact added back is restored as a new member would be: with
            # status_if_new (or status).
            restored = body.get("status_if_new") or body.get("status")
            if restored not in _STATUSES:
                return self._invalid("status_if_new is required for new members.",
                                     [{"field": "status_if_new", "message": "Required."}])
            return web.json_response(self._update_member(member, body, status=str(restored)))
        if member is not None:
            status = body.get("status")
            return web.json_response(self._update_member(
                member, body, status=str(status) if status else None))
        if subscriber_hash(str(body["email_address"])) != self._hash_of(request):
            return self._invalid("The subscriber hash does not match the email address.")
        status = body.get("status_if_new") or body.get("status")
        if status not in _STATUSES:
            return self._invalid("status_if_new is required for new members.",
                                 [{"field": "status_if_new", "message": "Required."}])
        return web.json_response(self._new_member(lst["id"], body, str(status)))

    async def _patch_member(self, request: web.Request) -> web.Response:
        lst = self._list(request)
        member = self._member(lst["id"], self._hash_of(request)) if lst else None
        if member is None:
            return self._not_found("member")
        body = await self._json(request)
        if not isinstance(body, Mapping):
            return self._invalid("The request body is not valid JSON.")
        status = body.get("status")
        if status is not None and status not in _STATUSES:
            return self._invalid(f"{status!r} is not an allowed status.")
        return web.json_response(self._update_member(member, body, status=status))

    async def _archive_member(self, request: web.Request) -> web.Response:
        lst = self._list(request)
        member = self._member(lst["id"], self._hash_of(request)) if lst else None
        if member is None or member["status"] == "archived":
            return self._not_found("member")
        member["status"] = "archived"
        member["last_changed"] = _now()
        self.notify_change("customer", member["id"], "deleted")
        return web.Response(status=204)

    async def _member_tags(self, request: web.Request) -> web.Response:
        lst = self._list(request)
        member = self._member(lst["id"], self._hash_of(request)) if lst else None
        if member is None:
            return self._not_found("member")
        body = await self._json(request)
        tags = body.get("tags") if isinstance(body, Mapping) else None
        if not isinstance(tags, list):
            return self._invalid("tags must be an array.")
        names = {t["name"] for t in member["tags"]}
        for tag in tags:
            if not isinstance(tag, Mapping) or not tag.get("name"):
                return self._invalid("each tag needs a name.")
            if tag.get("status", "active") == "active":
                names.add(str(tag["name"]))
            else:
                names.discard(str(tag["name"]))
        member["tags"] = [{"id": i + 1, "name": n} for i, n in enumerate(sorted(names))]
        return web.Response(status=204)

    # --- e-commerce ---------------------------------------------------------------------

    async def _create_store(self, request: web.Request) -> web.Response:
        body = await self._json(request)
        if not isinstance(body, Mapping):
            return self._invalid("The request body is not valid JSON.")
        missing = [k for k in ("id", "list_id", "name", "currency_code") if not body.get(k)]
        if missing:
            return self._invalid("The resource submitted could not be validated.",
                                 [{"field": k, "message": "Required."} for k in missing])
        lst = self.collection("list").get(str(body["list_id"]))
        if lst is None or lst.get("account") != request.get(ACCOUNT):
            return self._invalid("The list does not exist.")
        if str(body["id"]) in self.collection("store"):
            return self.error_response(400, "Bad Request",
                                       "A store with the provided ID already exists.")
        store = {**dict(body), "account": request.get(ACCOUNT), "created_at": _now()}
        self.put("store", str(body["id"]), store)
        return web.json_response({k: v for k, v in store.items() if k != "account"})

    async def _get_store(self, request: web.Request) -> web.Response:
        store = self._store(request)
        return web.json_response(store) if store else self._not_found("store")

    async def _get_product(self, request: web.Request) -> web.Response:
        return self._get_in(request, "product", request.match_info["product_id"], "product")

    def _get_in(self, request: web.Request, collection: str, rid: str,
                label: str) -> web.Response:
        """One of a store's records by id, or Mailchimp's 404 for the store or the record."""
        store = self._store(request)
        if store is None:
            return self._not_found("store")
        item = self.collection(collection).get(f"{store['id']}/{rid}")
        return web.json_response(item) if item else self._not_found(label)

    async def _put_product(self, request: web.Request) -> web.Response:
        store = self._store(request)
        if store is None:
            return self._not_found("store")
        body = await self._json(request)
        if not isinstance(body, Mapping):
            return self._invalid("The request body is not valid JSON.")
        pid = request.match_info["product_id"]
        if body.get("id", pid) != pid:
            return self._invalid("The product id in the body does not match the URL.")
        variants = body.get("variants")
        if not body.get("title") or not isinstance(variants, list) or not variants:
            return self._invalid("A product needs a title and at least one variant.",
                                 [{"field": "variants", "message": "Required."}])
        for v in variants:
            if not isinstance(v, Mapping) or not v.get("id") or not v.get("title"):
                return self._invalid("Each variant needs an id and a title.")
            if "price" in v and not isinstance(v["price"], int | float):
                return self._invalid("Variant price must be a number.")
        key = f"{store['id']}/{pid}"
        product = {**dict(body), "id": pid, "currency_code": store["currency_code"],
                   "published_at_foreign": body.get("published_at_foreign", ""),
                   "updated_at": _now()}
        self.put("product", key, product)  # store changes send no audience webhook
        return web.json_response(product)

    async def _delete_product(self, request: web.Request) -> web.Response:
        return self._delete_in(request, "product", request.match_info["product_id"])

    async def _delete_order(self, request: web.Request) -> web.Response:
        return self._delete_in(request, "transaction", request.match_info["order_id"])

    def _delete_in(self, request: web.Request, collection: str, rid: str) -> web.Response:
        store = self._store(request)
        if store is None:
            return self._not_found("store")
        if self.collection(collection).pop(f"{store['id']}/{rid}", None) is None:
            return self._not_found(collection)
        return web.Response(status=204)

    async def _create_order(self, request: web.Request) -> web.Response:
        store = self._store(request)
        if store is None:
            return self._not_found("store")
        body = await self._json(request)
        if not isinstance(body, Mapping):
            return self._invalid("The request body is not valid JSON.")
        problem = self._order_problem(store, body)
        if problem is not None:
            return problem
        oid = str(body["id"])
        key = f"{store['id']}/{oid}"
        if key in self.collection("transaction"):
            return self.error_response(400, "Bad Request",
                                       "An order with the provided ID already exists.")
        customer = dict(body["customer"])
        self.put("ecommerce_customer", f"{store['id']}/{customer['id']}", customer)
        order = {**dict(body), "id": oid, "store_id": store["id"],
                 "processed_at_foreign": body.get("processed_at_foreign", _now()),
                 "updated_at_foreign": _now()}
        self.put("transaction", key, order)
        return web.json_response(order)

    def _order_problem(self, store: Mapping[str, Any],
                       body: Mapping[str, Any]) -> web.Response | None:
        customer = body.get("customer")
        if not body.get("id") or not isinstance(customer, Mapping) or not customer.get("id"):
            return self._invalid("An order needs an id and a customer with an id.")
        if not isinstance(body.get("order_total"), int | float):
            return self._invalid("order_total must be a number.",
                                 [{"field": "order_total", "message": "Required."}])
        if not isinstance(body.get("currency_code"), str) or len(body["currency_code"]) != 3:
            return self._invalid("currency_code must be an ISO 4217 code.")
        lines = body.get("lines")
        if not isinstance(lines, list) or not lines:
            return self._invalid("An order needs at least one line.")
        for line in lines:
            if not isinstance(line, Mapping) or not line.get("id"):
                return self._invalid("Each line needs an id.")
            pkey = f"{store['id']}/{line.get('product_id')}"
            if pkey not in self.collection("product"):
                return self.error_response(
                    400, "Bad Request",
                    "A product with the provided ID does not exist in the account for this "
                    "list.")
        return None

    async def _get_order(self, request: web.Request) -> web.Response:
        return self._get_in(request, "transaction", request.match_info["order_id"], "order")

    async def _patch_order(self, request: web.Request) -> web.Response:
        store = self._store(request)
        if store is None:
            return self._not_found("store")
        key = f"{store['id']}/{request.match_info['order_id']}"
        order = self.collection("transaction").get(key)
        if order is None:
            return self._not_found("order")
        body = await self._json(request)
        if not isinstance(body, Mapping):
            return self._invalid("The request body is not valid JSON.")
        order.update({k: v for k, v in body.items() if k not in ("id", "store_id")})
        order["updated_at_foreign"] = _now()
        self.put("transaction", key, order)
        return web.json_response(order)

