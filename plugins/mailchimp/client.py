"""The Mailchimp Marketing API client: audience members, store products and orders.

Members
    New members go out in batch subscribes (``POST /3.0/lists/{list_id}``, up to 500) with
    ``update_existing: false``: Mailchimp documents that ``update_existing`` changes existing
    members' *subscription status*, which would resubscribe people who unsubscribed. Members
    the batch reports as already on the list, and members syncd already links, are upserted
    with ``PUT /lists/{list_id}/members/{md5(lower(email))}`` and ``status_if_new``, which
    never touches an existing member's status. Both are idempotent by design (Mailchimp has no
    idempotency keys): a retry after a lost response finds the member and adopts it. A member
    is its e-mail, so a new record whose member another local record holds (linked, or
    earlier in the same push) fails before anything is sent, rather than overwriting it.
Products
    ``PUT /ecommerce/stores/{store_id}/products/{id}`` (an upsert keyed by the local id).
Orders
    ``POST /ecommerce/stores/{store_id}/orders`` keyed by the local id; "already exists"
    (a retry after a lost response) adopts it with a ``PATCH``; a line whose product is not in
    the store gets a minimal product first.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
from collections.abc import AsyncIterator, Mapping, Sequence
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

import httpx

from daemon.httpclient import HTTPError, HTTPProviderClient, ProviderHTTP
from daemon.logs import get_logger
from daemon.provider import (
    ClientContext,
    ConnectionStatus,
    Credentials,
    Entity,
    ErrorKind,
    InboundChange,
    OutboundRecord,
    ProviderError,
    RecordResult,
    adoption_conflicts,
)
from daemon.ratelimit import registry_for
from plugins.mailchimp.capabilities import (
    BATCH_SUBSCRIBE_MAX,
    CAPABILITIES,
    MEMBER_PAGE_MAX,
    MailchimpOptions,
)
from plugins.mailchimp.webhooks import member_fields, subscriber_hash

__all__ = ["MailchimpClient", "base_host"]

log = get_logger("syncd.mailchimp")

_API = "/3.0"
_MEMBER_KEYS = ("email_address", "merge_fields", "language", "vip")
_EXISTS_CODES = frozenset({"ERROR_CONTACT_EXISTS"})


def base_host(ctx: ClientContext, options: MailchimpOptions) -> str:
    """Where the API lives: the override, else the data-centre host of the key or account."""
    if ctx.base_url:
        host = ctx.base_url.rstrip("/")
        return host.removesuffix(_API)
    dc = options.data_center or ctx.credentials.account.get("dc")
    key = ctx.credentials.api_key
    if not dc and key and "-" in key:
        dc = key.rsplit("-", 1)[1]
    return f"https://{dc}.api.mailchimp.com" if dc else "https://api.mailchimp.com"


def _auth_headers(credentials: Credentials) -> Mapping[str, str]:
    if credentials.api_key:
        token = base64.b64encode(f"syncd:{credentials.api_key}".encode()).decode("ascii")
        return {"Authorization": f"Basic {token}"}
    if credentials.access_token:
        return {"Authorization": f"Bearer {credentials.access_token}"}
    return {}


def _number(value: Any) -> float | int | None:
    """A JSON number from a decimal string or number (Mailchimp prices are numbers)."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return value
    try:
        return float(Decimal(str(value)))
    except (InvalidOperation, ValueError):
        return None


def _list(value: Any) -> list[Any]:
    """``value`` when it is a JSON array, else empty: a malformed answer names no member."""
    return value if isinstance(value, list) else []


def _error_detail(response: httpx.Response) -> str:
    """The ``detail`` of a Mailchimp error body, or the raw text when the body is not one
    (an HTML page from a proxy, a JSON array)."""
    try:
        data = response.json()
    except (ValueError, UnicodeDecodeError):
        data = None
    if isinstance(data, Mapping) and data.get("detail"):
        fields = [f"{e.get('field') or '(body)'}: {e.get('message')}"
                  for e in _list(data.get("errors"))[:3] if isinstance(e, Mapping)]
        return str(data["detail"]) + (f" ({'; '.join(fields)})" if fields else "")
    return response.text[:300] or response.reason_phrase or "no body"


def _valid_email(record: OutboundRecord) -> bool:
    email = record.payload.get("email_address")
    return isinstance(email, str) and "@" in email


def _failed(record: OutboundRecord, kind: ErrorKind, error: str,
            retry_after: float | None = None) -> RecordResult:
    return RecordResult(local_id=record.local_id, ok=False, error_kind=kind, error=error,
                        retry_after=retry_after)


def _from_error(record: OutboundRecord, exc: HTTPError) -> RecordResult:
    if exc.kind is ErrorKind.AUTH:
        raise exc
    return _failed(record, exc.kind, str(exc), exc.retry_after)


class MailchimpClient(HTTPProviderClient):
    """One Mailchimp account (API key or OAuth token) and one audience."""

    name = "mailchimp"

    def __init__(self, ctx: ClientContext) -> None:
        options = ctx.options
        self.options = (options if isinstance(options, MailchimpOptions)
                        else MailchimpOptions.model_validate(dict(options or {})))
        self.ctx = ctx
        creds = ctx.credentials
        secret = creds.api_key or creds.access_token or ""
        account = creds.account.get("account") or hashlib.sha256(
            secret.encode("utf-8")).hexdigest()[:16]
        host = base_host(ctx, self.options)
        self.http = ProviderHTTP(
            ctx.http,
            provider="mailchimp",
            base_url=host + _API,
            credentials=creds,
            auth_headers=_auth_headers,
            limiter=registry_for(ctx).get("mailchimp", f"{host}|{account}",
                                         CAPABILITIES.rate_limit),
            refresh=ctx.refresh,
            default_retry_after=CAPABILITIES.rate_limit.default_retry_after,
            default_headers={"Accept": "application/json"},
            retry=ctx.retry,
        )
        self._store_checked = False
        self._store_lock = (ctx.locks.get("mailchimp", f"{host}|{account}", "store")
                            if ctx.locks is not None else asyncio.Lock())

    # --- push -------------------------------------------------------------------------------

    async def _push(self, entity: Entity, records: Sequence[OutboundRecord]
                    ) -> list[RecordResult]:
        support = CAPABILITIES.entities.get(entity)
        if support is None:
            raise ProviderError(f"mailchimp does not sync {entity.value}", ErrorKind.PERMANENT)
        if len(records) > support.batch_size:
            raise ProviderError(
                f"{len(records)} {entity.value} records exceed the batch size "
                f"{support.batch_size}", ErrorKind.PERMANENT)
        removals = [r for r in records if r.operation != "upsert"]
        if removals:
            done = {r.local_id: await self._remove(entity, r) for r in removals}
            upserts = [r for r in records if r.operation == "upsert"]
            pushed = {r.local_id: r for r in await self._push(entity, upserts)} if upserts else {}
            return [done.get(r.local_id) or pushed[r.local_id] for r in records]
        if entity is Entity.CUSTOMER:
            return await self._push_members(records)
        if self.options.store_id is None:
            return [_failed(r, ErrorKind.PERMANENT, f"mailchimp: pushing {entity.value} needs "
                            "options.store_id (the e-commerce store)") for r in records]
        await self._ensure_store()
        if entity is Entity.PRODUCT:
            return [await self._push_product(r) for r in records]
        return [await self._push_order(r) for r in records]

    def _store_ready(self) -> bool:
        return self._store_checked

    async def _ensure_store(self) -> None:
        """Create the e-commerce store, connected to the audience, when it does not exist.

        One check at a time per account: batches pushed side by side would otherwise each
        find the store missing and all but one be refused creating it."""
        if self._store_checked:
            return
        async with self._store_lock:
            if self._store_ready():  # another batch made sure meanwhile
                return
            store = self.options.store_id
            resp = await self.http.request("GET", f"/ecommerce/stores/{store}",
                                           params={"fields": "id,list_id"}, accept={404})
            if resp.status_code == 404:
                await self.http.json("POST", "/ecommerce/stores", json_body={
                    "id": store, "list_id": self.options.list_id, "name": store,
                    "platform": "syncd", "currency_code": self.options.store_currency})
                log.info("mailchimp.store_created", store_id=store,
                         list_id=self.options.list_id)
            self._store_checked = True

    async def _remove(self, entity: Entity, record: OutboundRecord) -> RecordResult:
        """Archive a member, or delete a store product or order."""
        wanted = "archive" if entity is Entity.CUSTOMER else "delete"
        if record.operation != wanted:
            return _failed(record, ErrorKind.PERMANENT, f"mailchimp cannot {record.operation} "
                           f"a {CAPABILITIES.entities[entity].remote_kind}; use {wanted}")
        if not record.remote_id:
            return RecordResult(local_id=record.local_id, ok=True, action=f"{wanted}d")
        if entity is Entity.CUSTOMER:
            path = f"/lists/{self.options.list_id}/members/{record.remote_id}"
        elif self.options.store_id is None:
            return _failed(record, ErrorKind.PERMANENT, "mailchimp: needs options.store_id")
        else:
            kind = "products" if entity is Entity.PRODUCT else "orders"
            path = f"/ecommerce/stores/{self.options.store_id}/{kind}/{record.remote_id}"
        try:
            await self.http.request("DELETE", path, accept={404})
        except HTTPError as exc:
            return _from_error(record, exc)
        return RecordResult(local_id=record.local_id, ok=True, remote_id=record.remote_id,
                            action=f"{wanted}d")

    # members

    def _member_body(self, record: OutboundRecord) -> dict[str, Any]:
        payload = record.payload
        body = {k: payload[k] for k in _MEMBER_KEYS if payload.get(k) is not None}
        if isinstance(body.get("email_address"), str):
            body["email_address"] = body["email_address"].strip()
        tags = payload.get("tags")
        if isinstance(tags, list | tuple):
            body["tags"] = [str(t) for t in tags if str(t).strip()]
        return body

    def _new_status(self, record: OutboundRecord) -> str:
        opt_in = record.payload.get("marketing_opt_in", True)
        if opt_in is False or record.consent_withdrawn:
            # Consent withdrawn here (an unsubscribe, a cleaned address) is never undone by
            # a push: a member added again gets a status that sends no marketing.
            return "transactional"
        return "pending" if self.options.double_opt_in else "subscribed"

    async def _push_members(self, records: Sequence[OutboundRecord]) -> list[RecordResult]:
        results: dict[str, RecordResult] = {}
        fresh: list[OutboundRecord] = []
        upserts: list[OutboundRecord] = []
        # A member is its e-mail: an unlinked record's member is known before any call, and
        # is refused when another local record holds it (linked, or earlier in this push).
        candidates = {r.local_id: subscriber_hash(r.payload["email_address"].strip())
                      for r in records if not r.remote_id and _valid_email(r)}
        refused = await adoption_conflicts(self.ctx.linked, Entity.CUSTOMER, candidates)
        for record in records:
            if not _valid_email(record):
                results[record.local_id] = _failed(
                    record, ErrorKind.PERMANENT, "mailchimp: email_address is missing or invalid")
            elif record.local_id in refused:
                results[record.local_id] = _failed(
                    record, ErrorKind.PERMANENT, f"mailchimp: {refused[record.local_id]}")
            elif record.remote_id:
                upserts.append(record)
            else:
                fresh.append(record)
        if fresh:
            batch_results, existing = await self._batch_subscribe(fresh)
            results.update(batch_results)
            upserts.extend(existing)
        if upserts:
            done = await asyncio.gather(*(self._put_member(r) for r in upserts),
                                        return_exceptions=True)
            for record, outcome in zip(upserts, done, strict=True):
                if isinstance(outcome, BaseException):
                    raise outcome
                results[record.local_id] = outcome
        return [results[r.local_id] for r in records]

    async def _batch_subscribe(
        self, records: Sequence[OutboundRecord]
    ) -> tuple[dict[str, RecordResult], list[OutboundRecord]]:
        by_email: dict[str, OutboundRecord] = {}
        members = []
        for record in records[:BATCH_SUBSCRIBE_MAX]:
            body = self._member_body(record)
            body["status"] = self._new_status(record)
            by_email[body["email_address"].lower()] = record
            members.append(body)
        params = {"skip_merge_validation": "true"} if self.options.skip_merge_validation else None
        data = await self.http.json(
            "POST", f"/lists/{self.options.list_id}", params=params,
            json_body={"members": members, "update_existing": False, "sync_tags": False})
        results: dict[str, RecordResult] = {}
        existing: list[OutboundRecord] = []
        if not isinstance(data, Mapping):
            raise HTTPError("mailchimp: batch subscribe answered an unexpected body",
                            ErrorKind.RETRYABLE)
        for key, action in (("new_members", "created"), ("updated_members", "updated")):
            for member in _list(data.get(key)):
                if not isinstance(member, Mapping):
                    continue
                hit = by_email.get(str(member.get("email_address", "")).lower())
                if hit is not None:
                    results[hit.local_id] = RecordResult(
                        local_id=hit.local_id, ok=True, action=action,
                        remote_id=str(member.get("id") or subscriber_hash(
                            str(member["email_address"]))))
        for err in _list(data.get("errors")):
            if not isinstance(err, Mapping):
                continue
            hit = by_email.get(str(err.get("email_address", "")).lower())
            if hit is None or hit.local_id in results:
                continue
            code = str(err.get("error_code") or "")
            text = str(err.get("error") or "rejected")
            if code in _EXISTS_CODES or "already a list member" in text:
                existing.append(hit)
            else:
                results[hit.local_id] = _failed(
                    hit, ErrorKind.PERMANENT, f"mailchimp: {text[:300]}")
        for record in records:
            if record.local_id not in results and record not in existing:
                results[record.local_id] = _failed(
                    record, ErrorKind.RETRYABLE,
                    "mailchimp: the batch answer did not mention this member")
        return results, existing

    async def _put_member(self, record: OutboundRecord) -> RecordResult:
        body = self._member_body(record)
        body["status_if_new"] = self._new_status(record)
        target = record.remote_id or subscriber_hash(body["email_address"])
        tags = body.pop("tags", None)
        try:
            member = await self.http.json(
                "PUT", f"/lists/{self.options.list_id}/members/{target}", json_body=body,
                params={"skip_merge_validation": "true"}
                if self.options.skip_merge_validation else None)
            remote_id = str(member.get("id") if isinstance(member, Mapping) else "") or (
                subscriber_hash(body["email_address"]))
            have = {str(t.get("name")) for t in (member.get("tags") or [])
                    if isinstance(t, Mapping)} if isinstance(member, Mapping) else set()
            tags = [t for t in tags or [] if t not in have]
            if tags:  # only the tags the member lacks: usually no call at all
                await self.http.request(
                    "POST", f"/lists/{self.options.list_id}/members/{remote_id}/tags",
                    json_body={"tags": [{"name": t, "status": "active"} for t in tags]})
        except HTTPError as exc:
            return _from_error(record, exc)
        return RecordResult(local_id=record.local_id, ok=True, remote_id=remote_id,
                            action="updated" if record.remote_id else "adopted")

    # products

    def _product_body(self, record: OutboundRecord, product_id: str) -> dict[str, Any]:
        p = record.payload
        body: dict[str, Any] = {"id": product_id}
        for key in ("title", "description", "url", "image_url", "vendor", "type", "handle",
                    "published_at_foreign"):
            if p.get(key) is not None:
                body[key] = str(p[key])
        raw_variants = p.get("variants")
        first: Mapping[str, Any] = {}
        if isinstance(raw_variants, list) and raw_variants and isinstance(
                raw_variants[0], Mapping):
            first = raw_variants[0]
        variant: dict[str, Any] = {"id": product_id,
                                   "title": str(first.get("title") or body.get("title", ""))}
        price = _number(first.get("price"))
        if price is not None:
            variant["price"] = price
        if first.get("sku") is not None:
            variant["sku"] = str(first["sku"])
        if first.get("inventory_quantity") is not None:
            variant["inventory_quantity"] = int(first["inventory_quantity"])
        if body.get("url"):
            variant["url"] = body["url"]
        body["variants"] = [variant]
        return body

    async def _push_product(self, record: OutboundRecord) -> RecordResult:
        product_id = record.remote_id or record.local_id
        store = self.options.store_id
        try:
            await self.http.json("PUT", f"/ecommerce/stores/{store}/products/{product_id}",
                                 json_body=self._product_body(record, product_id))
        except HTTPError as exc:
            return _from_error(record, exc)
        return RecordResult(local_id=record.local_id, ok=True, remote_id=product_id,
                            action="updated" if record.remote_id else "created")

    # orders

    def _order_body(self, record: OutboundRecord, order_id: str) -> dict[str, Any]:
        p = record.payload
        body: dict[str, Any] = {"id": order_id}
        raw_customer = p.get("customer")
        cust: Mapping[str, Any] = raw_customer if isinstance(raw_customer, Mapping) else {}
        email = str(cust.get("email_address") or "").strip()
        customer: dict[str, Any] = {"id": subscriber_hash(email) if email else order_id,
                                    "email_address": email,
                                    "opt_in_status": bool(cust.get("opt_in_status", False))}
        for key in ("first_name", "last_name"):
            if cust.get(key):
                customer[key] = str(cust[key])
        body["customer"] = customer
        if p.get("currency_code") is not None:
            body["currency_code"] = str(p["currency_code"]).upper()
        body["order_total"] = _number(p.get("order_total"))
        for key in ("processed_at_foreign", "financial_status", "landing_site"):
            if p.get(key) is not None:
                body[key] = str(p[key])
        lines = []
        raw_lines = p.get("lines") if isinstance(p.get("lines"), list) else []
        for i, line in enumerate(raw_lines or []):
            if not isinstance(line, Mapping):
                continue
            product_id = str(line.get("product_id") or "")
            lines.append({"id": f"{order_id}-{i + 1}", "product_id": product_id,
                          "product_variant_id": product_id,
                          "quantity": int(line.get("quantity") or 1),
                          "price": _number(line.get("price")) or 0})
        body["lines"] = lines
        return body

    @staticmethod
    def _titles(record: OutboundRecord) -> dict[str, str]:
        """Each product of an order's lines and its title (an order line has no title:
        it names the product a missing one is created with)."""
        raw = record.payload.get("lines")
        titles: dict[str, str] = {}
        for line in raw if isinstance(raw, list) else []:
            if isinstance(line, Mapping):
                pid = str(line.get("product_id") or "")
                titles.setdefault(pid, str(line.get("product_title") or pid))
        return titles

    async def _ensure_products(self, body: Mapping[str, Any], titles: Mapping[str, str]
                               ) -> None:
        store = self.options.store_id
        for line in body.get("lines", []):
            pid = line["product_id"]
            resp = await self.http.request("GET", f"/ecommerce/stores/{store}/products/{pid}",
                                           params={"fields": "id"}, accept={404})
            if resp.status_code == 404:
                title = titles.get(pid) or pid
                await self.http.json(
                    "PUT", f"/ecommerce/stores/{store}/products/{pid}",
                    json_body={"id": pid, "title": title,
                               "variants": [{"id": pid, "title": title,
                                             "price": line["price"]}]})

    async def _push_order(self, record: OutboundRecord) -> RecordResult:
        order_id = record.remote_id or record.local_id
        store = self.options.store_id
        body = self._order_body(record, order_id)
        try:
            if not body["customer"]["email_address"] or not body["lines"]:
                return _failed(record, ErrorKind.PERMANENT,
                               "mailchimp: an order needs customer.email_address and a line")
            if record.remote_id:
                await self._patch_order(store, order_id, body)
                return RecordResult(local_id=record.local_id, ok=True, remote_id=order_id,
                                    action="updated")
            for attempt in range(2):
                resp = await self.http.request("POST", f"/ecommerce/stores/{store}/orders",
                                               json_body=body, accept={400})
                if resp.status_code < 300:
                    return RecordResult(local_id=record.local_id, ok=True, remote_id=order_id,
                                        action="created")
                detail = _error_detail(resp)
                if "already exists" in detail:
                    await self._patch_order(store, order_id, body)
                    return RecordResult(local_id=record.local_id, ok=True, remote_id=order_id,
                                        action="adopted")
                if "product" in detail.lower() and attempt == 0:
                    await self._ensure_products(body, self._titles(record))
                    continue
                return _failed(record, ErrorKind.PERMANENT, f"mailchimp: {detail[:300]}")
        except HTTPError as exc:
            return _from_error(record, exc)
        except ValueError:
            return _failed(record, ErrorKind.RETRYABLE, "mailchimp: malformed error body")
        return _failed(record, ErrorKind.PERMANENT, "mailchimp: the order was refused")

    async def _patch_order(self, store: str | None, order_id: str,
                           body: Mapping[str, Any]) -> None:
        patch = {k: v for k, v in body.items() if k not in ("id", "customer", "lines")}
        await self.http.json("PATCH", f"/ecommerce/stores/{store}/orders/{order_id}",
                             json_body=patch)

    # --- pull -------------------------------------------------------------------------------

    async def pull(self, entity: Entity, since: datetime | None) -> AsyncIterator[InboundChange]:
        if entity is not Entity.CUSTOMER:
            raise ProviderError(f"mailchimp cannot pull {entity.value}", ErrorKind.PERMANENT)
        offset = 0
        while True:
            params: dict[str, Any] = {
                "count": MEMBER_PAGE_MAX, "offset": offset,
                "fields": "members.id,members.email_address,members.status,"
                          "members.last_changed,members.merge_fields,total_items",
            }
            if since is not None:
                params["since_last_changed"] = since.astimezone(UTC).isoformat(
                    timespec="seconds")
            page = await self.http.json("GET", f"/lists/{self.options.list_id}/members",
                                        params=params)
            members = page.get("members") if isinstance(page, Mapping) else None
            if not isinstance(members, list) or not members:
                return
            for member in members:
                change = _member_change(member, self.options.list_id)
                if change is not None:
                    yield change
            offset += len(members)
            total = page.get("total_items")
            if isinstance(total, int) and offset >= total:
                return

    # --- connection -------------------------------------------------------------------------

    async def test_connection(self) -> ConnectionStatus:
        started = asyncio.get_running_loop().time()
        try:
            info = await self.http.json("GET", "/", params={"fields": "account_id,account_name"})
            await self.http.json("GET", f"/lists/{self.options.list_id}",
                                 params={"fields": "id,name"})
        except HTTPError as exc:
            if exc.kind is ErrorKind.AUTH:
                raise
            return ConnectionStatus(ok=False, detail=str(exc))
        elapsed = (asyncio.get_running_loop().time() - started) * 1000
        account = info.get("account_id") if isinstance(info, Mapping) else None
        return ConnectionStatus(ok=True, detail=f"audience {self.options.list_id} reachable",
                                account_id=str(account) if account else None,
                                latency_ms=round(elapsed, 1))


def _member_change(member: Any, list_id: str) -> InboundChange | None:
    if not isinstance(member, Mapping) or not member.get("email_address"):
        return None
    status = str(member.get("status", ""))
    remote_id = str(member.get("id") or subscriber_hash(str(member["email_address"])))
    changed = str(member.get("last_changed") or "")
    when: datetime | None = None
    try:
        when = datetime.fromisoformat(changed) if changed else None
    except ValueError:
        when = None
    kind: Any = ("unsubscribed" if status in ("unsubscribed", "cleaned")
                 else "subscribed" if status == "subscribed" else "updated")
    fields = member_fields(member.get("email_address"), status, member.get("merge_fields"))
    # last_changed has one-second resolution: the values tell two edits within it apart.
    values = json.dumps(fields, sort_keys=True, default=str)
    return InboundChange(
        provider="mailchimp", entity=Entity.CUSTOMER, remote_id=remote_id, change=kind,
        dedupe_key=hashlib.sha256(f"{remote_id}|{status}|{changed}|{values}".encode()
                                  ).hexdigest()[:32],
        payload=dict(member), occurred_at=when, account_id=list_id, event_type=f"member.{status}",
        fields=fields)
