"""The Square client: pushes catalog items, customers and orders for one seller.

- Products: one ``POST /v2/catalog/batch-upsert`` per push; each product (an ``ITEM`` with its
  ``ITEM_VARIATION``) is a batch of its own, so a product Square rejects fails alone. Linked
  items are read first (``batch-retrieve``) to reuse their variation ids. Square runs one
  catalog write per seller at a time, so catalog writes of one account are serialised here.
- Customers: linked ones go through ``bulk-update``; the others are adopted by exact
  ``reference_id`` then e-mail search (only a customer no other local record is linked to;
  two new records of one push with one e-mail: the later ones fail before anything is
  sent), else created with ``bulk-create`` (keyed by each record's idempotency key).
- Transactions: ``POST /v2/orders`` (its ``metadata`` names the local sale) then an
  ``EXTERNAL`` ``POST /v2/payments`` for the amount due; both keyed by the sale's identity,
  so a retry after a lost response neither duplicates nor double-pays. A sale an earlier
  attempt may have reached (``OutboundRecord.attempted_at``) is first looked for with
  ``POST /v2/orders/search`` among the orders created since that attempt, and paid or
  taken as it is rather than ordered again: Square does not say how long it keeps keys, and
  the sale may have changed since.

Every idempotency key is deterministic (see :mod:`daemon.sync.keys`) and shortened by
hashing where an endpoint's limit requires it.
"""

from __future__ import annotations

import asyncio
import hashlib
import html
import json
import re
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from daemon.httpclient import HTTPProviderClient, ProviderHTTP
from daemon.inventory import EPOCH, Allocation, parse_time
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
    minor_units,
)
from daemon.ratelimit import registry_for
from plugins.square.capabilities import (
    CATALOG_IDEMPOTENCY_MAX,
    CUSTOMER_IDEMPOTENCY_MAX,
    INVENTORY_IDEMPOTENCY_MAX,
    MAX_BULK_CUSTOMERS,
    MAX_INVENTORY_CHANGES,
    ORDER_IDEMPOTENCY_MAX,
    PAYMENT_IDEMPOTENCY_MAX,
    SQUARE_CAPABILITIES,
    SQUARE_VERSION,
)
from plugins.square.inventory import count_change, whole_count

_failed = RecordResult.failure

__all__ = ["SquareClient", "fit_key"]

_PRODUCTS_PER_REQUEST = SQUARE_CAPABILITIES.entities[Entity.PRODUCT].batch_size
#: Unlinked customers in one push from which listing all customers beats searching.
_INDEX_THRESHOLD = 20
#: The order metadata key naming the local sale an order was made for.
LOCAL_ID_KEY = "syncd_local_id"
#: How far before an earlier attempt's recorded start its order is looked for.
_ATTEMPT_MARGIN = timedelta(minutes=10)
#: The reference_id prefix of syncd's inventory adjustments; the allocation they leave follows.
ALLOCATION_REF = "syncd:allocation:"
#: How far before the last pull counts are asked for again (Square's clock is not syncd's).
_PULL_MARGIN = timedelta(minutes=5)
_CUSTOMER_FIELDS = ("given_name", "family_name", "company_name", "nickname", "email_address",
                    "phone_number", "reference_id", "note", "birthday")


def fit_key(key: str, limit: int, salt: str = "") -> str:
    """``key`` (plus ``salt``) as an idempotency key of at most ``limit`` characters.

    Deterministic: the same inputs always give the same key. Keys that fit are kept as
    they are; longer ones (or salted ones) become a hex SHA-256 prefix.
    """
    if not salt and len(key) <= limit:
        return key
    return hashlib.sha256(f"{key}|{salt}".encode()).hexdigest()[:min(limit, 64)]


def _describe(response: httpx.Response) -> tuple[str, str | None]:
    try:
        errors = response.json().get("errors")
        first = errors[0]
        return str(first.get("detail") or first.get("code"))[:300], str(first.get("code"))
    except (ValueError, AttributeError, IndexError, KeyError, TypeError):
        return (response.text[:300] or response.reason_phrase or "no body"), None


def _errors_text(errors: Any) -> str:
    if not isinstance(errors, list) or not errors:
        return "rejected by Square"
    parts = []
    for e in errors[:3]:
        if isinstance(e, dict):
            field = f" ({e['field']})" if e.get("field") else ""
            parts.append(f"{e.get('code', 'ERROR')}: {e.get('detail', '')}{field}")
    return "; ".join(parts)[:500] or "rejected by Square"


def _html(text: str) -> str:
    """Plain text as Square's ``description_html``: escaped, one paragraph, line breaks."""
    return "<p>" + html.escape(text, quote=False).replace("\n", "<br>") + "</p>"


def _text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        return value.isoformat()
    text = str(value)
    return text if text != "" else None



def _nested(payload: Mapping[str, Any], *path: str) -> Any:
    value: Any = payload
    for part in path:
        if not isinstance(value, Mapping):
            return None
        value = value.get(part)
    return value



@dataclass(frozen=True, slots=True)
class _Stock:
    """One inventory record on its way: the platform's figures, the variation that holds
    the count and, once planned, the adjustment to send and the allocation it leaves."""

    index: int
    record: OutboundRecord
    remaining: int
    pos: int
    variation: str
    state: Allocation | None = None
    delta: int = 0
    allocation: int = 0
    baseline: bool = False
    problem: str | None = None

    def but(self, **changes: Any) -> _Stock:
        return replace(self, **changes)


class SquareClient(HTTPProviderClient):
    """One Square seller account."""

    name = "square"

    def __init__(self, ctx: ClientContext) -> None:
        from plugins.square.provider import SquareOptions

        self.ctx = ctx
        self.options = ctx.options_as(SquareOptions)
        caps = SQUARE_CAPABILITIES
        base = ctx.base_url_for(caps)
        creds = ctx.credentials
        self.account = (creds.account.get("merchant_id") or ctx.venue_id or "default")
        self.http = ProviderHTTP(
            ctx.http, provider="square", base_url=base, credentials=creds,
            auth_headers=self._auth, refresh=ctx.refresh,
            limiter=registry_for(ctx).get(
                "square", f"{base}|{self.account}", caps.rate_limit),
            default_retry_after=caps.rate_limit.default_retry_after, describe=_describe,
            default_headers={"Square-Version": SQUARE_VERSION,
                             "Content-Type": "application/json"},
            retry=ctx.retry,
        )
        self._catalog = (ctx.locks.get("square", f"{base}|{self.account}", "catalog")
                         if ctx.locks is not None else asyncio.Lock())
        self._location_id: str | None = self.options.location_id
        #: Customers by reference id and e-mail, built once when a push has many unlinked
        #: records (listing is far cheaper than two searches per record).
        self._index: dict[str, str] | None = None
        #: Item variation of each event whose product is linked (local id -> variation id),
        #: from one catalog listing per client; None until listed.
        self._variations: dict[str, str] | None = None

    @staticmethod
    def _auth(creds: Credentials) -> Mapping[str, str]:
        token = creds.access_token or creds.api_key
        if not token:
            raise ProviderError("square: no access token in the credentials", ErrorKind.AUTH)
        return {"Authorization": f"Bearer {token}"}

    async def _json(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        data = await self.http.json(method, path, **kwargs)
        if data is None:
            return {}
        if not isinstance(data, dict):
            raise ProviderError(f"square: {method} {path} returned an unexpected body",
                                ErrorKind.RETRYABLE)
        return data

    # --- connection ----------------------------------------------------------------------

    async def test_connection(self) -> ConnectionStatus:
        started = time.monotonic()
        try:
            data = await self._json("GET", "/v2/locations", retry=False)
        except ProviderError as exc:
            return ConnectionStatus(ok=False, detail=str(exc))
        locations = data.get("locations") or []
        merchant = next((loc.get("merchant_id") for loc in locations
                         if isinstance(loc, dict)), None)
        return ConnectionStatus(ok=True, detail=f"{len(locations)} location(s)",
                                account_id=merchant,
                                latency_ms=(time.monotonic() - started) * 1000)

    async def _location(self) -> str:
        if self._location_id:
            return self._location_id
        data = await self._json("GET", "/v2/locations")
        for loc in data.get("locations") or []:
            if isinstance(loc, dict) and loc.get("status") == "ACTIVE" and loc.get("id"):
                self._location_id = str(loc["id"])
                return self._location_id
        raise ProviderError("square: the seller has no active location; set "
                            "options.location_id", ErrorKind.PERMANENT)

    # --- push ----------------------------------------------------------------------------

    async def _push(self, entity: Entity, records: Sequence[OutboundRecord]) -> list[RecordResult]:
        if not records:
            return []
        if entity is Entity.PRODUCT:
            results: list[RecordResult] = []
            for start in range(0, len(records), _PRODUCTS_PER_REQUEST):
                results.extend(await self._push_products(
                    records[start:start + _PRODUCTS_PER_REQUEST]))
            return results
        if entity is Entity.CUSTOMER:
            results = []
            for start in range(0, len(records), MAX_BULK_CUSTOMERS):
                results.extend(await self._push_customers(
                    records[start:start + MAX_BULK_CUSTOMERS]))
            return results
        if entity is Entity.TRANSACTION:
            return [await self._push_order(r) for r in records]
        if entity is Entity.INVENTORY:
            results = []
            for start in range(0, len(records), MAX_INVENTORY_CHANGES):
                results.extend(await self._push_inventory(
                    records[start:start + MAX_INVENTORY_CHANGES]))
            return results
        raise ProviderError(f"square: {entity.value} is not supported", ErrorKind.PERMANENT)

    # products

    def _catalog_lock(self) -> asyncio.Lock:
        """Catalog writes of one account, one at a time: the runtime's lock of the account
        (shared by every client of it in this process), else this client's own."""
        return self._catalog



    @staticmethod
    def _product_problem(payload: Mapping[str, Any]) -> str | None:
        name = _text(payload.get("name"))
        if not name or not name.strip():
            return "name is required"
        if len(name) > 512:
            return "name is longer than 512 characters"
        amount = minor_units(_nested(payload, "variation", "price_money", "amount"))
        if amount is None or amount < 0:
            return "variation.price_money.amount must be a whole number of minor units >= 0"
        currency = _text(_nested(payload, "variation", "price_money", "currency"))
        if not currency or len(currency) != 3 or not currency.isalpha():
            return "variation.price_money.currency must be an ISO 4217 code"
        return None

    def _item(self, record: OutboundRecord, temp: str,
              existing: Mapping[str, Any] | None) -> dict[str, Any]:
        p = record.payload
        variation_name = _text(_nested(p, "variation", "name")) or "General admission"
        variation_id = f"#{temp}-v"
        if existing is not None:
            variations = _nested(existing, "item_data", "variations") or []
            if variations and isinstance(variations[0], dict) and variations[0].get("id"):
                variation_id = str(variations[0]["id"])
        vdata: dict[str, Any] = {
            "name": variation_name, "pricing_type": "FIXED_PRICING",
            "price_money": {"amount": minor_units(_nested(p, "variation", "price_money", "amount")),
                            "currency": str(_nested(p, "variation", "price_money", "currency"))
                            .upper()},
        }
        sku = _text(_nested(p, "variation", "sku"))
        if sku:
            vdata["sku"] = sku
        track = _nested(p, "variation", "track_inventory")
        if isinstance(track, bool):
            vdata["track_inventory"] = track
        item_data: dict[str, Any] = {
            "name": _text(p.get("name")),
            "variations": [{"type": "ITEM_VARIATION", "id": variation_id,
                            "present_at_all_locations": True, "item_variation_data": vdata}],
        }
        description = _text(p.get("description"))
        if description:
            # item_data.description is deprecated (2022-07-20): description_html replaces it.
            item_data["description_html"] = _html(description)
        abbreviation = _text(p.get("abbreviation"))
        if abbreviation:
            item_data["abbreviation"] = abbreviation
        item_id = str(existing["id"]) if existing is not None else f"#{temp}"
        return {"type": "ITEM", "id": item_id, "present_at_all_locations": True,
                "item_data": item_data}

    async def _existing_items(self, ids: list[str]) -> dict[str, dict[str, Any]]:
        found: dict[str, dict[str, Any]] = {}
        for start in range(0, len(ids), 1000):
            data = await self._json("POST", "/v2/catalog/batch-retrieve",
                                    json_body={"object_ids": ids[start:start + 1000],
                                               "include_related_objects": False})
            for obj in data.get("objects") or []:
                if isinstance(obj, dict) and obj.get("type") == "ITEM" and obj.get("id"):
                    found[str(obj["id"])] = obj
        return found

    async def _push_products(self, records: Sequence[OutboundRecord]) -> list[RecordResult]:
        results: dict[int, RecordResult] = {}
        deletes = [(i, r) for i, r in enumerate(records)
                   if r.operation in ("delete", "archive") and r.remote_id]
        for i, r in enumerate(records):
            if r.operation in ("delete", "archive") and not r.remote_id:
                results[i] = RecordResult(r.local_id, ok=True, action="unchanged")
        if deletes:
            async with self._catalog_lock():
                await self._json("POST", "/v2/catalog/batch-delete",
                                 json_body={"object_ids": [r.remote_id for _, r in deletes]})
            for i, r in deletes:
                results[i] = RecordResult(r.local_id, ok=True, remote_id=r.remote_id,
                                          action="deleted")
        upserts: list[tuple[int, OutboundRecord]] = []
        for i, r in enumerate(records):
            if i in results or r.operation != "upsert":
                continue
            problem = self._product_problem(r.payload)
            if problem:
                results[i] = _failed(r, problem)
            else:
                upserts.append((i, r))
        if upserts:
            linked = [r.remote_id for _, r in upserts if r.remote_id]
            existing = await self._existing_items(linked) if linked else {}
            batches = []
            temps: dict[int, str] = {}
            for i, r in upserts:
                temps[i] = f"p{i}"
                item = self._item(r, temps[i], existing.get(r.remote_id or ""))
                batches.append({"objects": [item]})
            body: dict[str, Any] = {"batches": batches}
            key_source = ",".join(r.idempotency_key for _, r in upserts)
            digest = hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()
            body["idempotency_key"] = fit_key(key_source, CATALOG_IDEMPOTENCY_MAX, digest)
            async with self._catalog_lock():
                response = await self.http.request("POST", "/v2/catalog/batch-upsert",
                                                   json_body=body, accept=(400,))
            results.update(self._catalog_results(response, upserts, temps, existing))
        return [results[i] for i in range(len(records))]

    def _catalog_results(self, response: httpx.Response,
                         upserts: list[tuple[int, OutboundRecord]], temps: dict[int, str],
                         existing: Mapping[str, Any]) -> dict[int, RecordResult]:
        try:
            data = response.json()
            if not isinstance(data, dict):
                raise TypeError
        except (ValueError, TypeError):
            raise ProviderError("square: catalog batch-upsert returned a body that is not a "
                                "JSON object", ErrorKind.RETRYABLE,
                                status=response.status_code) from None
        mapping = {m.get("client_object_id"): m.get("object_id")
                   for m in data.get("id_mappings") or [] if isinstance(m, dict)}
        objects = {o.get("id"): o for o in data.get("objects") or [] if isinstance(o, dict)}
        errors = data.get("errors") or []
        out: dict[int, RecordResult] = {}
        for i, r in upserts:
            linked = bool(r.remote_id and r.remote_id in existing)
            remote = r.remote_id if linked else mapping.get(f"#{temps[i]}")
            obj = objects.get(remote) if remote else None
            if remote and obj is not None:
                version = obj.get("version")
                out[i] = RecordResult(r.local_id, ok=True, remote_id=str(remote),
                                      remote_version=str(version) if version else None,
                                      action="updated" if linked else "created")
                continue
            mine = [e for e in errors if isinstance(e, dict) and (
                f"#{temps[i]}" in str(e.get("detail", "")) or
                (r.remote_id and r.remote_id in str(e.get("detail", ""))))]
            out[i] = _failed(r, _errors_text(mine or errors))
        return out

    # customers

    def _customer_body(self, payload: Mapping[str, Any]) -> dict[str, Any]:
        body: dict[str, Any] = {}
        for key in _CUSTOMER_FIELDS:
            value = _text(payload.get(key))
            if value is not None:
                body[key] = value[:10] if key == "birthday" else value
        return body

    @staticmethod
    def _customer_problem(body: Mapping[str, Any]) -> str | None:
        email = body.get("email_address")
        if not email:
            return "email_address is required"
        if "@" not in email or email.startswith("@") or email.endswith("@") or " " in email:
            return f"email_address {email!r} is not a valid e-mail address"
        for key, limit in (("given_name", 300), ("family_name", 300), ("company_name", 500),
                           ("nickname", 100), ("email_address", 254), ("reference_id", 100)):
            if len(str(body.get(key, ""))) > limit:
                return f"{key} is longer than {limit} characters"
        return None

    async def _search_customer(self, field: str, value: str) -> dict[str, Any] | None:
        data = await self._json("POST", "/v2/customers/search", json_body={
            "limit": 1, "query": {"filter": {field: {"exact": value}},
                                  "sort": {"field": "CREATED_AT", "order": "ASC"}}})
        customers = data.get("customers") or []
        first = customers[0] if customers else None
        return first if isinstance(first, dict) and first.get("id") else None

    async def _build_index(self) -> dict[str, str]:
        """reference id and e-mail -> customer id for every customer (oldest wins)."""
        index: dict[str, str] = {}
        cursor: str | None = None
        while True:
            params = {"limit": "100", "sort_field": "CREATED_AT", "sort_order": "ASC"}
            if cursor:
                params["cursor"] = cursor
            data = await self._json("GET", "/v2/customers", params=params)
            for customer in data.get("customers") or []:
                if isinstance(customer, dict) and customer.get("id"):
                    self._remember(index, customer)
            cursor = data.get("cursor")
            if not cursor:
                return index

    @staticmethod
    def _remember(index: dict[str, str], customer: Mapping[str, Any]) -> None:
        if customer.get("reference_id"):
            index.setdefault(f"ref:{customer['reference_id']}", str(customer["id"]))
        if customer.get("email_address"):
            index.setdefault(f"email:{str(customer['email_address']).lower()}",
                             str(customer["id"]))

    async def _adopt(self, body: Mapping[str, Any], unlinked: int) -> str | None:
        """The id of an existing customer with the record's reference id, else its e-mail.

        A few records are looked up with search (two calls at most each); a push with many
        unlinked records lists the seller's customers once and looks them up locally.
        """
        ref = body.get("reference_id")
        email = str(body["email_address"]).lower()
        if self._index is None and unlinked >= _INDEX_THRESHOLD:
            self._index = await self._build_index()
        if self._index is not None:
            return self._index.get(f"ref:{ref}") if ref and f"ref:{ref}" in self._index \
                else self._index.get(f"email:{email}")
        if ref:
            found = await self._search_customer("reference_id", str(ref))
            if found:
                return str(found["id"])
        found = await self._search_customer("email_address", email)
        return str(found["id"]) if found else None

    async def _push_customers(self, records: Sequence[OutboundRecord]) -> list[RecordResult]:
        results: dict[int, RecordResult] = {}
        updates: dict[str, tuple[int, OutboundRecord, str]] = {}
        update_bodies: dict[str, dict[str, Any]] = {}
        creates: list[tuple[int, OutboundRecord, dict[str, Any]]] = []
        unlinked = sum(1 for r in records if not r.remote_id and r.operation == "upsert")
        planned: list[tuple[int, OutboundRecord, dict[str, Any], str | None, str]] = []
        found_for: dict[str, str] = {}
        emails: dict[str, str] = {}
        for i, r in enumerate(records):
            if r.operation != "upsert":
                results[i] = await self._delete_customer(r)
                continue
            body = self._customer_body(r.payload)
            problem = self._customer_problem(body)
            if problem:
                results[i] = _failed(r, problem)
                continue
            remote = r.remote_id
            action = "updated"
            if not remote:
                email = str(body["email_address"]).lower()
                twin = emails.get(email)
                if twin is not None:  # two new records, one e-mail: settled before pushing
                    results[i] = _failed(r, f"local record {twin} has the same e-mail "
                                         f"{email} in this push: merge or tell them apart")
                    continue
                emails[email] = r.local_id
                found = await self._adopt(body, unlinked)
                if found is not None:
                    remote, action = found, "adopted"
                    found_for[r.local_id] = found
            planned.append((i, r, body, remote, action))
        refused = await adoption_conflicts(self.ctx.linked, Entity.CUSTOMER, found_for)
        for i, r, body, remote, action in planned:
            if r.local_id in refused:
                results[i] = _failed(r, refused[r.local_id])
            elif remote and remote not in updates:
                updates[remote] = (i, r, action)
                update_bodies[remote] = body
            else:
                creates.append((i, r, body))
        if updates:
            data = await self._json("POST", "/v2/customers/bulk-update",
                                    json_body={"customers": update_bodies})
            responses = data.get("responses") or {}
            for remote, (i, r, action) in updates.items():
                entry = responses.get(remote) if isinstance(responses, dict) else None
                customer = entry.get("customer") if isinstance(entry, dict) else None
                if isinstance(customer, dict) and customer.get("id"):
                    results[i] = RecordResult(r.local_id, ok=True, remote_id=str(customer["id"]),
                                              remote_version=str(customer.get("version", "")),
                                              action=action)
                    continue
                codes = [e.get("code") for e in (entry or {}).get("errors") or []
                         if isinstance(e, dict)]
                if "NOT_FOUND" in codes and action == "updated":
                    creates.append((i, r, update_bodies[remote]))  # deleted in Square
                else:
                    results[i] = _failed(r, _errors_text((entry or {}).get("errors")))
        if creates:
            keys: dict[str, tuple[int, OutboundRecord]] = {}
            entries: dict[str, dict[str, Any]] = {}
            for i, r, body in creates:
                key = fit_key(r.idempotency_key, CUSTOMER_IDEMPOTENCY_MAX)
                if key in keys:
                    key = fit_key(r.idempotency_key, CUSTOMER_IDEMPOTENCY_MAX, r.local_id)
                keys[key] = (i, r)
                entries[key] = body
            data = await self._json("POST", "/v2/customers/bulk-create",
                                    json_body={"customers": entries})
            responses = data.get("responses") or {}
            for key, (i, r) in keys.items():
                entry = responses.get(key) if isinstance(responses, dict) else None
                customer = entry.get("customer") if isinstance(entry, dict) else None
                if isinstance(customer, dict) and customer.get("id"):
                    if self._index is not None:
                        self._remember(self._index, customer)
                    results[i] = RecordResult(r.local_id, ok=True, remote_id=str(customer["id"]),
                                              remote_version=str(customer.get("version", "")),
                                              action="created")
                else:
                    errors = entry.get("errors") if isinstance(entry, dict) else None
                    results[i] = _failed(r, _errors_text(errors) if errors else
                                         "Square returned no result for this customer",
                                         ErrorKind.PERMANENT if errors else ErrorKind.RETRYABLE)
        return [results[i] for i in range(len(records))]

    async def _delete_customer(self, record: OutboundRecord) -> RecordResult:
        if not record.remote_id or record.operation == "archive":
            return RecordResult(record.local_id, ok=True, remote_id=record.remote_id,
                                action="unchanged")
        response = await self.http.request("DELETE", f"/v2/customers/{record.remote_id}",
                                           accept=(404,))
        del response
        return RecordResult(record.local_id, ok=True, remote_id=record.remote_id,
                            action="deleted")

    # orders

    async def _push_order(self, record: OutboundRecord) -> RecordResult:
        if record.operation != "upsert":
            return RecordResult(record.local_id, ok=True, remote_id=record.remote_id,
                                action="unchanged")
        if record.remote_id:
            return _failed(record, "Square orders cannot be changed after they are created "
                           "and paid; change the sale in Square (refund or new sale)")
        p = record.payload
        name = _text(_nested(p, "line_item", "name"))
        total = minor_units(_nested(p, "total_money", "amount"))
        currency = (_text(_nested(p, "total_money", "currency")) or "").upper()
        reference = _text(p.get("reference_id"))
        quantity = minor_units(_nested(p, "line_item", "quantity")) or 1
        if not name:
            return _failed(record, "line_item.name is required")
        if total is None or total < 0:
            return _failed(record, "total_money.amount must be a whole number of minor units")
        if len(currency) != 3 or not currency.isalpha():
            return _failed(record, "total_money.currency must be an ISO 4217 code")
        if not reference or len(reference) > 40:
            return _failed(record, "reference_id is required (at most 40 characters)")
        if quantity > 0 and total % quantity == 0:
            unit, count = total // quantity, quantity
        else:
            unit, count, name = total, 1, f"{name} x {quantity}"
        line: dict[str, Any] = {"name": name[:512], "quantity": str(count),
                                "base_price_money": {"amount": unit, "currency": currency}}
        note = _text(_nested(p, "line_item", "note"))
        if note:
            line["note"] = note
        location = await self._location()
        placed = await self._earlier_order(record, location) if record.attempted_at else None
        action = "adopted" if placed is not None else "created"
        if placed is None:
            order: dict[str, Any] = {"location_id": location, "reference_id": reference,
                                     "line_items": [line],
                                     "metadata": {LOCAL_ID_KEY: record.local_id[:255]}}
            ticket = _text(p.get("ticket_name"))
            if ticket:
                order["ticket_name"] = ticket[:30]
            email = _text(p.get("customer_email"))
            if email:
                found = await self._search_customer("email_address", email)
                if found:
                    order["customer_id"] = found["id"]
            response = await self.http.request(
                "POST", "/v2/orders", accept=(400, 404), json_body={
                    "idempotency_key": fit_key(record.idempotency_key, ORDER_IDEMPOTENCY_MAX),
                    "order": order})
            created = self._body_of(response)
            if response.status_code >= 400 or not isinstance(created.get("order"), dict):
                return _failed(record, _errors_text(created.get("errors")))
            placed = created["order"]
        order_id = placed.get("id")
        if not isinstance(order_id, str):
            return _failed(record, "Square returned an order without an id", ErrorKind.RETRYABLE)
        if placed.get("state") not in (None, "OPEN", "COMPLETED"):
            return _failed(record, f"Square order {order_id}, made for this sale by an earlier "
                           f"attempt, is {placed.get('state')}: settle it in Square")
        due = placed.get("net_amount_due_money") or placed.get("total_money")
        if isinstance(due, dict) and due.get("amount", 0) > 0:
            paid = await self.http.request("POST", "/v2/payments", accept=(400, 404), json_body={
                "idempotency_key": fit_key(record.idempotency_key, PAYMENT_IDEMPOTENCY_MAX,
                                           "payment"),
                "source_id": "EXTERNAL", "amount_money": due, "order_id": order_id,
                "autocomplete": True, "reference_id": reference,
                "external_details": {"type": "OTHER", "source": self.options.payment_source},
            })
            payment = self._body_of(paid)
            if paid.status_code >= 400:
                return RecordResult(record.local_id, ok=False, remote_id=order_id,
                                    error_kind=ErrorKind.PERMANENT,
                                    error="order created but the external payment was refused: "
                                          + _errors_text(payment.get("errors")))
        return RecordResult(record.local_id, ok=True, remote_id=order_id,
                            remote_version=str(placed.get("version", "")), action=action)

    async def _earlier_order(self, record: OutboundRecord,
                             location: str) -> dict[str, Any] | None:
        """The order an earlier attempt made for this sale: the location's orders created
        since that attempt, matched by their metadata (SearchOrders has no reference or
        metadata filter)."""
        assert record.attempted_at is not None
        since = (record.attempted_at - _ATTEMPT_MARGIN).astimezone(UTC)
        cursor: str | None = None
        while True:
            body: dict[str, Any] = {
                "location_ids": [location], "limit": 1000, "return_entries": False,
                "query": {"filter": {"date_time_filter": {"created_at": {
                    "start_at": since.isoformat().replace("+00:00", "Z")}}},
                    "sort": {"sort_field": "CREATED_AT", "sort_order": "ASC"}}}
            if cursor:
                body["cursor"] = cursor
            data = await self._json("POST", "/v2/orders/search", json_body=body)
            for order in data.get("orders") or []:
                if isinstance(order, dict) and _nested(order, "metadata", LOCAL_ID_KEY) == \
                        record.local_id[:255]:
                    return order
            cursor = data.get("cursor")
            if not cursor:
                return None

    @staticmethod
    def _body_of(response: httpx.Response) -> dict[str, Any]:
        try:
            data = response.json()
        except (ValueError, UnicodeDecodeError):
            raise ProviderError(f"square: {response.request.url.path} returned a body that is "
                                "not JSON", ErrorKind.RETRYABLE,
                                status=response.status_code) from None
        if not isinstance(data, dict):
            raise ProviderError(f"square: {response.request.url.path} returned an unexpected "
                                "body", ErrorKind.RETRYABLE, status=response.status_code)
        return data

    # inventory

    async def _variation_ids(self, local_ids: Sequence[str], *,
                             relist: bool = False) -> dict[str, str]:
        """{local id: item variation id} of the events among ``local_ids`` whose product
        is linked: the catalog's items are listed once per client (``types=ITEM``, cursor)
        and matched to product links through ``ctx.linked``."""
        if self._variations is None or relist:
            items: dict[str, str] = {}
            cursor: str | None = None
            while True:
                params = {"types": "ITEM"}
                if cursor:
                    params["cursor"] = cursor
                data = await self._json("GET", "/v2/catalog/list", params=params)
                for obj in data.get("objects") or []:
                    if not isinstance(obj, dict) or obj.get("type") != "ITEM" or \
                            obj.get("is_deleted") or not obj.get("id"):
                        continue
                    variations = _nested(obj, "item_data", "variations") or []
                    if variations and isinstance(variations[0], dict) and \
                            variations[0].get("id"):
                        items[str(obj["id"])] = str(variations[0]["id"])
                cursor = data.get("cursor")
                if not cursor:
                    break
            owners = await self.ctx.linked(Entity.PRODUCT, sorted(items)) \
                if self.ctx.linked is not None and items else {}
            self._variations = {local: items[item] for item, local in owners.items()}
        return {i: self._variations[i] for i in local_ids if i in self._variations}

    async def _stock_counts(self, location: str, ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        """The current IN_STOCK counts of ``ids`` at ``location``, by variation id."""
        found: dict[str, dict[str, Any]] = {}
        cursor: str | None = None
        while ids:
            body: dict[str, Any] = {"catalog_object_ids": list(ids), "location_ids": [location],
                                    "states": ["IN_STOCK"], "limit": 1000}
            if cursor:
                body["cursor"] = cursor
            data = await self._json("POST", "/v2/inventory/counts/batch-retrieve",
                                    json_body=body)
            for count in data.get("counts") or []:
                if isinstance(count, dict) and count.get("catalog_object_id"):
                    found[str(count["catalog_object_id"])] = count
            cursor = data.get("cursor")
            if not cursor:
                break
        return found

    async def _unrecorded(self, location: str, states: Mapping[str, Allocation]
                          ) -> dict[str, Allocation]:
        """Changes syncd made after the state each link records (sent, and their answer
        never stored: a crash, a lost response): the newest per variation, so the next
        adjustment starts from where the count really is, not from the link."""
        found: dict[str, Allocation] = {}
        if not states:
            return found
        after = min(s.as_of for s in states.values())
        cursor: str | None = None
        while True:
            body: dict[str, Any] = {
                "catalog_object_ids": sorted(states), "location_ids": [location],
                "types": ["ADJUSTMENT"], "limit": 1000,
                "updated_after": after.astimezone(UTC).isoformat().replace("+00:00", "Z")}
            if cursor:
                body["cursor"] = cursor
            data = await self._json("POST", "/v2/inventory/changes/batch-retrieve",
                                    json_body=body)
            for change in data.get("changes") or []:
                adjustment = change.get("adjustment") if isinstance(change, dict) else None
                if not isinstance(adjustment, dict):
                    continue
                object_id = str(adjustment.get("catalog_object_id"))
                reference = str(adjustment.get("reference_id") or "")
                created = parse_time(adjustment.get("created_at"))
                state = states.get(object_id)
                if state is None or created is None or not reference.startswith(
                        ALLOCATION_REF) or created <= state.as_of:
                    continue
                try:
                    allocation = int(reference[len(ALLOCATION_REF):])
                except ValueError:
                    continue
                best = found.get(object_id)
                if best is None or created > best.as_of:
                    found[object_id] = Allocation(allocation, created, location)
            cursor = data.get("cursor")
            if not cursor:
                return found

    async def _push_inventory(self, records: Sequence[OutboundRecord]) -> list[RecordResult]:
        """Keep each event's count: relative ADJUSTMENTs from the allocation the link
        records (docs/inventory.md), never an absolute count over a register sale."""
        results: dict[int, RecordResult] = {}
        wanted: list[tuple[int, OutboundRecord, int, int]] = []
        for i, r in enumerate(records):
            if r.operation != "upsert":  # a deleted event's count is left as it is
                results[i] = RecordResult(r.local_id, ok=True, remote_id=r.remote_id,
                                          remote_version=r.remote_version, action="unchanged")
                continue
            remaining, pos = r.payload.get("quantity"), r.payload.get("pos_sold")
            if isinstance(remaining, bool) or not isinstance(remaining, int):
                results[i] = _failed(r, "quantity must be a whole number of tickets")
            elif isinstance(pos, bool) or not isinstance(pos, int) or pos < 0:
                results[i] = _failed(r, "pos_sold must be a whole number of tickets >= 0")
            else:
                wanted.append((i, r, remaining, pos))
        if wanted:
            location = await self._location()
            unlinked = [r.local_id for _, r, _, _ in wanted if not r.remote_id]
            found = await self._variation_ids(unlinked) if unlinked else {}
            items: list[_Stock] = []
            for i, r, remaining, pos in wanted:
                variation = r.remote_id or found.get(r.local_id)
                if variation is None:
                    results[i] = _failed(r, "the event has no Square catalog item yet: its "
                                         "product must be synced before its count")
                else:
                    items.append(_Stock(i, r, remaining, pos, variation))
            results.update(await self._send_stock(items, location, relinked=False))
        return [results[i] for i in range(len(records))]

    async def _plan_stock(self, items: Sequence[_Stock], location: str) -> list[_Stock]:
        """Each item with its adjustment (``delta``), the allocation it leaves and, when no
        change is needed, the state to record."""
        states = {s.variation: a for s in items
                  if (a := Allocation.parse(s.record.remote_version)) is not None
                  and a.location == location and s.variation == s.record.remote_id}
        states.update(await self._unrecorded(location, states))
        planned: list[_Stock] = []
        to_read: list[str] = []
        for item in items:
            state = states.get(item.variation)
            target = item.remaining + item.pos  # N: capacity less online sales
            if state is None:
                to_read.append(item.variation)
                planned.append(item)
            else:
                planned.append(item.but(state=state, delta=target - state.allocation))
                if target < state.allocation:
                    to_read.append(item.variation)
        counts = await self._stock_counts(location, to_read) if to_read else {}
        out: list[_Stock] = []
        for item in planned:
            count = counts.get(item.variation)
            current = whole_count(count.get("quantity")) if count else 0
            as_of = (parse_time(count.get("calculated_at")) if count else None) or EPOCH
            if current is None:
                out.append(item.but(problem="Square's count of the item is not a whole "
                                            "number of tickets; set it in Square first"))
            elif item.state is None:
                # First count here: from what Square holds now, to the platform's remaining
                # (never below zero). A register sale between this read and the change is
                # then counted, as the allocation is N.
                goal = max(item.remaining, 0)
                out.append(item.but(delta=goal - current, allocation=goal + item.pos,
                                    state=Allocation(goal + item.pos, as_of, location),
                                    baseline=True))
            else:
                delta = item.delta
                if delta < 0 and count is not None:
                    delta = max(delta, -max(current, 0))  # syncd never takes it below zero
                out.append(item.but(delta=delta, allocation=item.state.allocation + delta))
        return out

    async def _send_stock(self, items: Sequence[_Stock], location: str, *,
                          relinked: bool) -> dict[int, RecordResult]:
        results: dict[int, RecordResult] = {}
        plans = await self._plan_stock(items, location) if items else []
        sending: list[_Stock] = []
        for plan in plans:
            r = plan.record
            if plan.problem:
                results[plan.index] = _failed(r, plan.problem)
            elif plan.delta == 0:
                assert plan.state is not None
                state = plan.state if not plan.baseline else Allocation(
                    plan.allocation, plan.state.as_of, location)
                results[plan.index] = RecordResult(
                    r.local_id, ok=True, remote_id=plan.variation,
                    remote_version=state.encode(),
                    action="created" if plan.baseline else "unchanged")
            else:
                sending.append(plan)
        if not sending:
            return results
        occurred = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        changes = [{"type": "ADJUSTMENT", "adjustment": {
            "catalog_object_id": p.variation, "location_id": location,
            "from_state": "NONE" if p.delta > 0 else "IN_STOCK",
            "to_state": "IN_STOCK" if p.delta > 0 else "SOLD",
            "quantity": str(abs(p.delta)), "occurred_at": occurred,
            "reference_id": f"{ALLOCATION_REF}{p.allocation}"}} for p in sending]
        body: dict[str, Any] = {"changes": changes}
        digest = hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()
        body["idempotency_key"] = fit_key(",".join(p.record.idempotency_key for p in sending),
                                          INVENTORY_IDEMPOTENCY_MAX, digest)
        response = await self.http.request("POST", "/v2/inventory/changes/batch-create",
                                           json_body=body, accept=(400, 404))
        data = self._body_of(response)
        if response.status_code < 400:
            counts = {str(c.get("catalog_object_id")): c for c in data.get("counts") or []
                      if isinstance(c, dict)}
            for p in sending:
                count = counts.get(p.variation)
                as_of = parse_time(count.get("calculated_at")) if count else None
                if as_of is None:
                    results[p.index] = _failed(p.record, "Square answered without the "
                                               "item's count", ErrorKind.RETRYABLE)
                    continue
                results[p.index] = RecordResult(
                    p.record.local_id, ok=True, remote_id=p.variation,
                    remote_version=Allocation(p.allocation, as_of, location).encode(),
                    action="created" if p.baseline else "updated")
            return results
        # Square applies a request all or nothing: the changes it names fail, the others
        # go again; a linked item Square no longer has is looked up again (its product may
        # have been made anew) and counted from scratch.
        errors = [e for e in data.get("errors") or [] if isinstance(e, dict)]
        named: dict[int, list[dict[str, Any]]] = {}
        for error in errors:
            match = re.match(r"changes\[(\d+)\]", str(error.get("field") or ""))
            if match and int(match[1]) < len(sending):
                named.setdefault(int(match[1]), []).append(error)
        if not named:
            for p in sending:
                results[p.index] = _failed(p.record, _errors_text(errors))
            return results
        again: list[_Stock] = []
        gone: list[_Stock] = []
        for n, p in enumerate(sending):
            mine = named.get(n)
            if mine is None:
                again.append(_Stock(p.index, p.record, p.remaining, p.pos, p.variation))
            elif not relinked and p.record.remote_id and any(
                    e.get("code") == "NOT_FOUND" and "catalog_object_id" in str(
                        e.get("field")) for e in mine):
                gone.append(p)
            else:
                results[p.index] = _failed(p.record, _errors_text(mine))
        if gone:
            fresh = await self._variation_ids([p.record.local_id for p in gone], relist=True)
            for p in gone:
                variation = fresh.get(p.record.local_id)
                if variation is None or variation == p.variation:
                    results[p.index] = _failed(p.record, "the event's Square item variation "
                                               f"{p.variation} is gone and its product has "
                                               "no other yet")
                else:
                    again.append(_Stock(p.index, p.record, p.remaining, p.pos, variation))
        results.update(await self._send_stock(again, location, relinked=True))
        return results

    async def _pull_inventory(self, since: datetime | None) -> AsyncIterator[InboundChange]:
        """Counts at the integration's location changed since ``since`` (a margin before
        it: Square's clock is not syncd's), of linked variations only."""
        location = await self._location()
        cursor: str | None = None
        while True:
            body: dict[str, Any] = {"location_ids": [location], "states": ["IN_STOCK"],
                                    "limit": 1000}
            if since is not None:
                body["updated_after"] = (since - _PULL_MARGIN).astimezone(UTC).isoformat(
                ).replace("+00:00", "Z")
            if cursor:
                body["cursor"] = cursor
            data = await self._json("POST", "/v2/inventory/counts/batch-retrieve",
                                    json_body=body)
            changes = [c for c in (count_change(count, account_id=self.account,
                                                event_type="inventory.count.pulled")
                                   for count in data.get("counts") or []
                                   if isinstance(count, dict)) if c is not None]
            linked = await self.ctx.linked(Entity.INVENTORY, [c.remote_id for c in changes]) \
                if self.ctx.linked is not None and changes else None
            for change in changes:
                if linked is None or change.remote_id in linked:
                    yield change
            cursor = data.get("cursor")
            if not cursor:
                return

    # --- pull ----------------------------------------------------------------------------

    async def pull(self, entity: Entity, since: datetime | None) -> AsyncIterator[InboundChange]:
        """Inventory counts or customers changed since ``since`` (cursor pagination); other
        entities: none."""
        if entity is Entity.INVENTORY:
            async for change in self._pull_inventory(since):
                yield change
            return
        if entity is not Entity.CUSTOMER:
            return
        cursor: str | None = None
        while True:
            params = {"limit": "100", "sort_field": "DEFAULT"}
            if cursor:
                params["cursor"] = cursor
            data = await self._json("GET", "/v2/customers", params=params)
            for customer in data.get("customers") or []:
                if not isinstance(customer, dict) or not customer.get("id"):
                    continue
                updated = _parse_time(customer.get("updated_at"))
                if since is not None and updated is not None and updated <= since:
                    continue
                yield InboundChange(
                    provider="square", entity=Entity.CUSTOMER, remote_id=str(customer["id"]),
                    change="updated",
                    dedupe_key=f"customer:{customer['id']}:{customer.get('version', '')}",
                    payload=customer, occurred_at=updated, account_id=self.account,
                    event_type="customer.pulled")
            cursor = data.get("cursor")
            if not cursor:
                return


def _parse_time(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
