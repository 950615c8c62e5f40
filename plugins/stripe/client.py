"""The Stripe client: pushes products (with prices) and customers for one account.

Stripe v1 has no batch endpoints, so records go one per call; several records of a push run
concurrently within the account's rate limit (the shared limiter enforces it).

- Products get a deterministic ``id`` (from the venue and the local id), so creating is an
  upsert: a create that meets ``resource_already_exists`` updates instead. Prices are
  immutable: when the amount or currency changes, a new ``Price`` is created and set as the
  product's ``default_price``, and the old one is archived.
- Customers are adopted by e-mail (exact, read-after-write consistent lists, unlike search)
  before one is created, and only when the customer found is not linked to another local
  record. A customer syncd creates or adopts carries ``syncd_local_id`` in its metadata; a
  customer an earlier attempt may have created (``OutboundRecord.attempted_at``) is first
  looked for among the customers created since, by that key (its e-mail may have changed).
  The first unlinked customer of a client lists the account's customers once: when that
  first page is the whole list (a new or small account), every later e-mail is looked up
  in it, with no call; otherwise each one is looked up with ``GET /v1/customers?email=``.
- Sales become invoices paid out of band: the buyer (adopted by e-mail or created), a draft
  invoice (whose metadata carries ``syncd_local_id``), one invoice item on it, finalize, and
  ``pay`` with ``paid_out_of_band``. A sale an earlier attempt may have reached
  (``OutboundRecord.attempted_at``) is first looked for among the invoices created since
  that attempt, by that metadata, and finished rather than created again: Stripe forgets
  idempotency keys after 24 hours, and the sale may have changed since.
- Every POST carries an ``Idempotency-Key`` derived from the record's key (a create's from its
  identity, an update's from the state it starts from and its content), so a retry after a
  lost response replays Stripe's first answer instead of writing twice.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

import httpx

from daemon.httpclient import HTTPError, HTTPProviderClient, ProviderHTTP
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
    minor_units,
)
from daemon.ratelimit import registry_for
from plugins.stripe.capabilities import IDEMPOTENCY_KEY_MAX, STRIPE_CAPABILITIES

_failed = RecordResult.failure

__all__ = ["StripeClient", "encode_form", "product_id_for"]

_PRODUCT_FIELDS = ("name", "description", "url", "statement_descriptor", "unit_label")
#: The metadata key naming the local record a customer or invoice was made for.
LOCAL_ID_KEY = "syncd_local_id"
#: How far before an earlier attempt's recorded start its invoice is looked for (clocks
#: differ between syncd's database and Stripe).
_ATTEMPT_MARGIN_S = 600
_CUSTOMER_FIELDS = ("email", "name", "phone", "description")


def product_id_for(venue_id: str, local_id: str) -> str:
    """The deterministic Stripe product id of a local event: the natural upsert key."""
    digest = hashlib.sha256(f"{venue_id}\x1f{local_id}".encode()).hexdigest()[:24]
    return f"syncd_{digest}"


def _key(record_key: str, step: str) -> str:
    key = f"{record_key}:{step}"
    if len(key) <= IDEMPOTENCY_KEY_MAX:
        return key
    return hashlib.sha256(key.encode()).hexdigest()


def encode_form(params: Mapping[str, Any], prefix: str = "") -> list[tuple[str, str]]:
    """Stripe's form encoding: nested maps as ``a[b]``, lists as ``a[]``, booleans lower."""
    out: list[tuple[str, str]] = []
    for key, value in params.items():
        name = f"{prefix}[{key}]" if prefix else str(key)
        if value is None:
            continue
        if isinstance(value, Mapping):
            out.extend(encode_form(value, name))
        elif isinstance(value, list | tuple):
            out.extend((f"{name}[]", _scalar(v)) for v in value)
        else:
            out.append((name, _scalar(value)))
    return out


def _scalar(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime):
        return value.isoformat()
    return str(value)


def _describe(response: httpx.Response) -> tuple[str, str | None]:
    try:
        error = response.json()["error"]
        code = error.get("code") or error.get("type")
        param = f" (param {error['param']})" if error.get("param") else ""
        return f"{error.get('message', '')}{param}"[:300], code
    except (ValueError, KeyError, TypeError, AttributeError):
        return (response.text[:300] or response.reason_phrase or "no body"), None




class StripeClient(HTTPProviderClient):
    """One Stripe account (or a connected account through ``options.account``)."""

    name = "stripe"

    def __init__(self, ctx: ClientContext) -> None:
        from plugins.stripe.provider import StripeOptions

        self.ctx = ctx
        self.options = ctx.options_as(StripeOptions)
        caps = STRIPE_CAPABILITIES
        base = ctx.base_url or caps.base_url
        headers: dict[str, str] = {}
        if self.options.account:
            headers["Stripe-Account"] = self.options.account
        if self.options.api_version:
            headers["Stripe-Version"] = self.options.api_version
        creds = ctx.credentials
        self.account = self.options.account or creds.account.get("account") or ctx.venue_id
        self.http = ProviderHTTP(
            ctx.http, provider="stripe", base_url=base, credentials=creds,
            auth_headers=self._auth, refresh=ctx.refresh,
            limiter=registry_for(ctx).get(
                "stripe", f"{base}|{self.account}", caps.rate_limit),
            default_retry_after=caps.rate_limit.default_retry_after, describe=_describe,
            default_headers=headers,
            retry=ctx.retry,
        )
        #: E-mail -> customer id when the first page of the customer list was all of it
        #: (False: the account has more, look each e-mail up; None: not fetched yet).
        self._emails: dict[str, str] | bool | None = None
        self._emails_lock = asyncio.Lock()
        #: Customer id -> local id of what this client created or adopted.
        self._owners: dict[str, str] = {}

    @staticmethod
    def _auth(creds: Credentials) -> Mapping[str, str]:
        key = creds.api_key or creds.access_token
        if not key:
            raise ProviderError("stripe: no API key in the credentials", ErrorKind.AUTH)
        return {"Authorization": f"Bearer {key}"}

    async def _call(self, method: str, path: str, *, params: Mapping[str, Any] | None = None,
                    idempotency_key: str | None = None) -> dict[str, Any]:
        pairs = encode_form(params or {})
        if method == "GET":
            data = await self.http.json(method, path, params=httpx.QueryParams(urlencode(pairs)))
        else:
            headers = {"Content-Type": "application/x-www-form-urlencoded"}
            if idempotency_key:
                headers["Idempotency-Key"] = idempotency_key
            data = await self.http.json(method, path, content=urlencode(pairs).encode(),
                                        headers=headers)
        if not isinstance(data, dict):
            raise ProviderError(f"stripe: {method} {path} returned an unexpected body",
                                ErrorKind.RETRYABLE)
        return data

    # --- connection ----------------------------------------------------------------------

    async def test_connection(self) -> ConnectionStatus:
        started = time.monotonic()
        try:
            account = await self._call("GET", "/v1/account")
        except ProviderError as exc:
            return ConnectionStatus(ok=False, detail=str(exc))
        return ConnectionStatus(ok=True, detail="account reachable",
                                account_id=str(account.get("id") or "") or None,
                                latency_ms=(time.monotonic() - started) * 1000)

    # --- push ----------------------------------------------------------------------------

    async def _push(self, entity: Entity, records: Sequence[OutboundRecord]
                    ) -> list[RecordResult]:
        if entity is Entity.PRODUCT:
            one = self._push_product
        elif entity is Entity.CUSTOMER:
            one = self._push_customer
        elif entity is Entity.TRANSACTION:
            one = self._push_sale
        else:
            raise ProviderError(f"stripe: {entity.value} is not supported (see the plugin's "
                                "unsupported list)", ErrorKind.PERMANENT)
        limit = asyncio.Semaphore(STRIPE_CAPABILITIES.rate_limit.max_concurrency)

        async def guarded(record: OutboundRecord) -> RecordResult:
            async with limit:
                try:
                    return await one(record)
                except HTTPError as exc:
                    if exc.kind is ErrorKind.PERMANENT:
                        return _failed(record, str(exc))
                    raise

        outcomes = await asyncio.gather(*(guarded(r) for r in records),
                                        return_exceptions=True)
        for outcome in outcomes:  # a whole-call failure (auth, retries exhausted) wins
            if isinstance(outcome, BaseException):
                raise outcome
        return [o for o in outcomes if isinstance(o, RecordResult)]

    # products

    def _product_params(self, payload: Mapping[str, Any]) -> dict[str, Any]:
        params: dict[str, Any] = {}
        for key in _PRODUCT_FIELDS:
            value = payload.get(key)
            if value is not None and value != "":
                params[key] = _scalar(value)
        if isinstance(payload.get("active"), bool):
            params["active"] = payload["active"]
        metadata = payload.get("metadata")
        if isinstance(metadata, Mapping):
            params["metadata"] = {k: _scalar(v) for k, v in metadata.items() if v is not None}
        return params

    def _price_of(self, payload: Mapping[str, Any]) -> tuple[int, str] | str:
        price = payload.get("price")
        price = price if isinstance(price, Mapping) else {}
        amount = minor_units(price.get("unit_amount"))
        currency = str(price.get("currency") or self.options.currency or "").lower()
        if amount is None or amount < 0:
            return "price.unit_amount must be a whole number of minor units >= 0"
        if not re.fullmatch(r"[a-z]{3}", currency):
            return "price.currency must be an ISO 4217 code"
        return amount, currency

    async def _push_product(self, record: OutboundRecord) -> RecordResult:
        if record.operation != "upsert":
            return await self._archive_product(record)
        p = record.payload
        if not p.get("name"):
            return _failed(record, "name is required")
        price = self._price_of(p)
        if isinstance(price, str):
            return _failed(record, price)
        amount, currency = price
        params = self._product_params(p)
        product_id = record.remote_id or product_id_for(self.ctx.venue_id, record.local_id)
        action = "updated"
        product: dict[str, Any] | None = None
        if not record.remote_id:
            try:
                product = await self._call("POST", "/v1/products", idempotency_key=_key(
                    record.idempotency_key, "product"), params={
                        **params, "id": product_id, "expand": ["default_price"],
                        "default_price_data": {"unit_amount": amount, "currency": currency}})
                action = "created"
            except HTTPError as exc:
                # The code for a duplicate custom id is not documented; Stripe's error-code
                # list has resource_already_exists, and its message says "already exists".
                # idempotency_error: an earlier attempt created it from other content.
                if exc.code not in ("resource_already_exists", "idempotency_error") and \
                        "already exists" not in str(exc):
                    raise
                action = "adopted"
        if product is None:
            try:
                product = await self._call(
                    "POST", f"/v1/products/{product_id}", params={
                        **params, "expand": ["default_price"]},
                    idempotency_key=_key(record.idempotency_key, "update"))
            except HTTPError as exc:
                if exc.status != 404 or not record.remote_id:
                    raise
                # Linked product deleted at Stripe: create it again under the natural id.
                relinked = OutboundRecord(record.entity, record.local_id, record.payload,
                                          record.content_hash, record.idempotency_key)
                return await self._push_product(relinked)
        current = product.get("default_price")
        if isinstance(current, Mapping) and current.get("unit_amount") == amount and \
                current.get("currency") == currency and current.get("active", True):
            return RecordResult(record.local_id, ok=True, remote_id=product_id,
                                remote_version=str(current.get("id")), action=action)
        new_price = await self._call("POST", "/v1/prices", idempotency_key=_key(
            record.idempotency_key, "price"), params={
                "product": product_id, "unit_amount": amount, "currency": currency})
        price_id = new_price.get("id")
        if not isinstance(price_id, str):
            return _failed(record, "Stripe returned a price without an id", ErrorKind.RETRYABLE)
        await self._call("POST", f"/v1/products/{product_id}", params={
            "default_price": price_id}, idempotency_key=_key(record.idempotency_key, "default"))
        if isinstance(current, Mapping) and isinstance(current.get("id"), str) and \
                current.get("active", True):
            await self._call("POST", f"/v1/prices/{current['id']}", params={"active": False},
                             idempotency_key=_key(record.idempotency_key, "archive-price"))
        return RecordResult(record.local_id, ok=True, remote_id=product_id,
                            remote_version=price_id, action=action)

    async def _archive_product(self, record: OutboundRecord) -> RecordResult:
        if not record.remote_id:
            return RecordResult(record.local_id, ok=True, action="unchanged")
        await self._call("POST", f"/v1/products/{record.remote_id}", params={"active": False},
                         idempotency_key=_key(record.idempotency_key, "archive"))
        return RecordResult(record.local_id, ok=True, remote_id=record.remote_id,
                            action="archived")

    # customers

    def _customer_params(self, payload: Mapping[str, Any]) -> dict[str, Any]:
        params: dict[str, Any] = {}
        for key in _CUSTOMER_FIELDS:
            value = payload.get(key)
            if value is not None and value != "":
                params[key] = _scalar(value)
        metadata = payload.get("metadata")
        if isinstance(metadata, Mapping):
            params["metadata"] = {k: _scalar(v) for k, v in metadata.items() if v is not None}
        return params

    async def _customer_index(self) -> dict[str, str] | None:
        """E-mail -> id of every customer, when one page lists them all; else None."""
        async with self._emails_lock:
            if self._emails is None:
                data = await self._call("GET", "/v1/customers", params={"limit": 100})
                if data.get("has_more"):
                    self._emails = False
                else:
                    index: dict[str, str] = {}
                    for c in data.get("data") or []:  # newest first, as the e-mail lookup
                        if isinstance(c, Mapping) and c.get("id") and c.get("email"):
                            index.setdefault(str(c["email"]), str(c["id"]))
                    self._emails = index
        return self._emails if isinstance(self._emails, dict) else None

    def _remember(self, email: str, customer_id: str) -> None:
        if isinstance(self._emails, dict):
            self._emails[email] = customer_id

    async def _find_customer(self, email: str) -> str | None:
        index = await self._customer_index()
        if index is not None:
            return index.get(email)
        data = await self._call("GET", "/v1/customers", params={"email": email, "limit": 1})
        found = data.get("data") or []
        first = found[0] if found else None
        return str(first["id"]) if isinstance(first, Mapping) and first.get("id") else None

    async def _owner(self, customer_id: str) -> str | None:
        """The local record ``customer_id`` is linked to (or was taken by in this client)."""
        owner = self._owners.get(customer_id)
        if owner is None and self.ctx.linked is not None:
            owner = (await self.ctx.linked(Entity.CUSTOMER, [customer_id])).get(customer_id)
        return owner

    async def _push_customer(self, record: OutboundRecord) -> RecordResult:
        if record.operation != "upsert":
            if not record.remote_id or record.operation == "archive":
                return RecordResult(record.local_id, ok=True, remote_id=record.remote_id,
                                    action="unchanged")
            await self.http.request("DELETE", f"/v1/customers/{record.remote_id}",
                                    accept=(404,))
            return RecordResult(record.local_id, ok=True, remote_id=record.remote_id,
                                action="deleted")
        params = self._customer_params(record.payload)
        email = params.get("email")
        if not email:
            return _failed(record, "email is required")
        remote, action = record.remote_id, "updated"
        if remote:
            try:
                await self._call("POST", f"/v1/customers/{remote}", params=params,
                                 idempotency_key=_key(record.idempotency_key, "update"))
                return RecordResult(record.local_id, ok=True, remote_id=remote, action=action)
            except HTTPError as exc:
                if exc.status != 404:
                    raise
                remote = None  # deleted at Stripe: adopt or create again
        params = {**params, "metadata": {**params.get("metadata", {}),
                                         LOCAL_ID_KEY: record.local_id}}
        remote = None
        if record.attempted_at is not None:
            earlier = await self._earlier(record, "/v1/customers")
            remote = str(earlier["id"]) if earlier is not None else None
        remote = remote or await self._find_customer(email)
        if remote:
            owner = await self._owner(remote)
            if owner is not None and owner != record.local_id:
                return _failed(record, f"Stripe customer {remote} has this e-mail but is "
                               f"linked to local record {owner}; two local customers share "
                               f"{email}: merge them or tell them apart")
            self._owners[remote] = record.local_id
            await self._call("POST", f"/v1/customers/{remote}", params=params,
                             idempotency_key=_key(record.idempotency_key, "adopt"))
            return RecordResult(record.local_id, ok=True, remote_id=remote, action="adopted")
        customer = await self._call("POST", "/v1/customers", params=params,
                                    idempotency_key=_key(record.idempotency_key, "create"))
        customer_id = customer.get("id")
        if not isinstance(customer_id, str):
            return _failed(record, "Stripe returned a customer without an id",
                           ErrorKind.RETRYABLE)
        self._owners[customer_id] = record.local_id
        self._remember(email, customer_id)
        return RecordResult(record.local_id, ok=True, remote_id=customer_id, action="created")

    # transactions

    async def _push_sale(self, record: OutboundRecord) -> RecordResult:
        """A sale as an invoice paid out of band: customer, draft, item, finalize, pay.

        Every step has its own idempotency key, so a retry after any lost answer replays
        the steps already done and finishes the rest.
        """
        if record.operation != "upsert":
            return RecordResult(record.local_id, ok=True, remote_id=record.remote_id,
                                action="unchanged")
        if record.remote_id:
            return _failed(record, "a paid Stripe invoice cannot be changed; refund or credit "
                           "it in Stripe")
        p = record.payload
        email = str(p.get("customer_email") or "").strip()
        description = str(p.get("description") or "").strip()
        amount = minor_units(p.get("amount"))
        currency = str(p.get("currency") or self.options.currency or "").lower()
        if not email:
            return _failed(record, "customer_email is required")
        if not description:
            return _failed(record, "description is required")
        if amount is None or amount < 0:
            return _failed(record, "amount must be a whole number of minor units >= 0")
        if not re.fullmatch(r"[a-z]{3}", currency):
            return _failed(record, "currency must be an ISO 4217 code")
        metadata = p.get("metadata")
        meta = {k: _scalar(v) for k, v in metadata.items() if v is not None} \
            if isinstance(metadata, Mapping) else {}
        invoice = await self._earlier_invoice(record) if record.attempted_at else None
        action = "adopted" if invoice is not None else "created"
        if invoice is None:
            customer_id = await self._find_customer(email)
            if customer_id is None:
                made = await self._call("POST", "/v1/customers", params={
                    "email": email, "name": p.get("customer_name")},
                    idempotency_key=_key(record.idempotency_key, "customer"))
                customer_id = str(made.get("id") or "")
                if not customer_id:
                    return _failed(record, "Stripe returned a customer without an id",
                                   ErrorKind.RETRYABLE)
                self._remember(email, customer_id)
            invoice = await self._call("POST", "/v1/invoices", params={
                "customer": customer_id, "collection_method": "send_invoice",
                "days_until_due": 30, "auto_advance": False, "currency": currency,
                "pending_invoice_items_behavior": "exclude",
                "metadata": {**meta, LOCAL_ID_KEY: record.local_id}},
                idempotency_key=_key(record.idempotency_key, "invoice"))
        invoice_id = invoice.get("id")
        if not isinstance(invoice_id, str):
            return _failed(record, "Stripe returned an invoice without an id",
                           ErrorKind.RETRYABLE)
        customer_id = str(invoice.get("customer") or "")
        status = invoice.get("status")
        lines = invoice.get("lines")
        has_line = isinstance(lines, Mapping) and bool(lines.get("data"))
        if status == "draft" and not has_line:
            await self._call("POST", "/v1/invoiceitems", params={
                "customer": customer_id, "invoice": invoice_id, "amount": amount,
                "currency": currency, "description": description, "metadata": meta},
                idempotency_key=_key(record.idempotency_key, "item"))
        if status == "draft":
            final = await self._call("POST", f"/v1/invoices/{invoice_id}/finalize",
                                     params={"auto_advance": False},
                                     idempotency_key=_key(record.idempotency_key, "finalize"))
            status = final.get("status")
        if status == "open":  # a zero total is paid on finalizing
            await self._call("POST", f"/v1/invoices/{invoice_id}/pay",
                             params={"paid_out_of_band": True},
                             idempotency_key=_key(record.idempotency_key, "pay"))
        elif status != "paid":
            return _failed(record, f"Stripe invoice {invoice_id}, made for this sale by an "
                           f"earlier attempt, is {status}: settle it in Stripe")
        return RecordResult(record.local_id, ok=True, remote_id=invoice_id, action=action)

    async def _earlier_invoice(self, record: OutboundRecord) -> dict[str, Any] | None:
        return await self._earlier(record, "/v1/invoices")

    async def _earlier(self, record: OutboundRecord, path: str) -> dict[str, Any] | None:
        """What an earlier attempt made for this record (a customer, an invoice): the
        objects created since that attempt (a list, so consistent, unlike search), matched
        by their ``syncd_local_id`` metadata."""
        assert record.attempted_at is not None
        since = int(record.attempted_at.timestamp()) - _ATTEMPT_MARGIN_S
        after: str | None = None
        while True:
            params: dict[str, Any] = {"limit": 100, "created": {"gte": since}}
            if after:
                params["starting_after"] = after
            data = await self._call("GET", path, params=params)
            page = [i for i in data.get("data") or [] if isinstance(i, dict) and i.get("id")]
            for found in page:
                meta = found.get("metadata")
                if isinstance(meta, Mapping) and meta.get(LOCAL_ID_KEY) == record.local_id:
                    return found
            if not data.get("has_more") or not page:
                return None
            after = str(page[-1]["id"])

    # --- pull ----------------------------------------------------------------------------

    async def pull(self, entity: Entity, since: datetime | None) -> AsyncIterator[InboundChange]:
        """Customers or products created since ``since``, newest first, every page."""
        paths: dict[Entity, str] = {Entity.CUSTOMER: "/v1/customers",
                                    Entity.PRODUCT: "/v1/products"}
        path = paths.get(entity)
        if path is None:
            return
        after: str | None = None
        while True:
            params: dict[str, Any] = {"limit": 100}
            if after:
                params["starting_after"] = after
            data = await self._call("GET", path, params=params)
            page = [o for o in data.get("data") or [] if isinstance(o, Mapping) and o.get("id")]
            for obj in page:
                created = obj.get("created")
                when = datetime.fromtimestamp(created, UTC) if isinstance(created, int) else None
                if since is not None and when is not None and when <= since:
                    return
                yield InboundChange(provider="stripe", entity=entity, remote_id=str(obj["id"]),
                                    change="updated", dedupe_key=f"pull:{obj['id']}:{created}",
                                    payload=dict(obj), occurred_at=when,
                                    account_id=self.account, event_type=f"{entity.value}.pulled")
            if not data.get("has_more") or not page:
                return
            after = str(page[-1]["id"])
