"""The QuickBooks Online Accounting v3 client: items, customers, sales receipts or invoices.

Every push is one ``POST /v3/company/{realm}/batch`` of up to 30 operations (serial on
Intuit's side; each item answers alone, so a rejected record fails alone), with a
``requestid`` derived from the records' idempotency keys: a retry of the same batch after a
lost response gets Intuit's replay of the original answer, never a second copy.

- update when linked: ``Id`` + ``SyncToken`` with ``sparse: true``; a stale SyncToken
  (5010) re-reads the entity and tries once more;
- create when not: a DisplayName/Name clash (6240) adopts the entity with that name (or, for
  customers, that email) and updates it; transactions are first looked up by ``DocNumber``;
- transaction lines name their item and buyer; the client resolves them to ids, creating a
  minimal item or customer when missing (each with its own deterministic ``requestid``).

``minorversion`` is sent on every call; HTTP 200 with a ``Fault`` body is an error.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

import httpx

from daemon.errors import SyncdError
from daemon.httpclient import Fault, HTTPError, HTTPProviderClient, ProviderHTTP
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
    inbound_values,
)
from daemon.ratelimit import registry_for
from plugins.quickbooks.capabilities import (
    BATCH_MAX,
    CAPABILITIES,
    QUERY_PAGE_MAX,
    QuickBooksOptions,
)

__all__ = [
    "CODE_DUPLICATE_NAME",
    "CODE_STALE_OBJECT",
    "QuickBooksClient",
    "batch_request_id",
    "classify_fault",
    "fault_of",
    "quote",
]

log = get_logger("syncd.quickbooks")

CODE_DUPLICATE_NAME = "6240"
CODE_STALE_OBJECT = "5010"
CODE_NOT_FOUND = "610"
#: Intuit's limits on ``requestid``.
REQUEST_ID_MAX = 50
BATCH_REQUEST_ID_MAX = 36
#: CDC looks back at most 30 days.
CDC_MAX_AGE = timedelta(days=30)


def quote(value: str) -> str:
    """A string literal for the query language."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def batch_request_id(keys: Iterable[str]) -> str:
    """A deterministic ``requestid`` (<= 36 chars) for a batch of record versions."""
    digest = hashlib.sha256("\n".join(keys).encode("utf-8")).hexdigest()
    return digest[:BATCH_REQUEST_ID_MAX]


def _single_request_id(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()[:REQUEST_ID_MAX]


def classify_fault(fault_type: str, code: str) -> ErrorKind:
    """The error kind of a QuickBooks ``Fault`` (its type and first error code).

    Authentication and authorization faults (and codes below 500, as Intuit numbers them,
    plus 3200 AuthenticationFailed) need new credentials; system and throttling faults
    (code 3001 ThrottleExceeded, 10000 and up) are transient; validation faults are final.
    """
    t = fault_type.lower()
    number = int(code) if code.isdigit() else 0
    if "authentication" in t or "authorization" in t or 0 < number < 500 or number == 3200:
        return ErrorKind.AUTH
    if "system" in t or "throttl" in t or number == 3001 or number >= 10000:
        return ErrorKind.RETRYABLE
    return ErrorKind.PERMANENT


def _fault_parts(fault: Any) -> tuple[str, str, str] | None:
    if not isinstance(fault, Mapping):
        return None
    errors = fault.get("Error") or fault.get("error") or []
    first = errors[0] if isinstance(errors, list) and errors else {}
    if not isinstance(first, Mapping):
        first = {}
    message = str(first.get("Message") or first.get("message") or "fault")
    detail = str(first.get("Detail") or first.get("detail") or "")
    code = str(first.get("code") or "").lstrip("0") or "0"
    text = f"{message}: {detail}" if detail and detail != message else message
    return str(fault.get("type") or ""), code, text[:300]


def fault_of(body: Any) -> Fault | None:
    """The top-level ``Fault`` of a response body, classified, or None."""
    if not isinstance(body, Mapping):
        return None
    parts = _fault_parts(body.get("Fault") or body.get("fault"))
    if parts is None:
        return None
    ftype, code, text = parts
    return Fault(classify_fault(ftype, code), text, code)


def _fault_hook(response: httpx.Response) -> Fault | None:
    if b"ault" not in response.content[:200]:
        return None
    try:
        return fault_of(response.json())
    except (ValueError, UnicodeDecodeError):
        return None


def _describe(response: httpx.Response) -> tuple[str, str | None]:
    try:
        fault = fault_of(response.json())
    except (ValueError, UnicodeDecodeError):
        fault = None
    if fault is not None:
        return fault.message, fault.code
    text = response.text.strip()[:300] if response.content else ""
    return text or response.reason_phrase or "no body", None


def _bearer(credentials: Credentials) -> Mapping[str, str]:
    return {"Authorization": f"Bearer {credentials.access_token}"} if (
        credentials.access_token) else {}


def _number(value: Any) -> float | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        return float(Decimal(str(value)))
    except (InvalidOperation, ValueError):
        return None


@dataclass(slots=True)
class _Op:
    """One operation of a batch, with the record it serves."""

    record: OutboundRecord
    operation: str  # create | update
    body: dict[str, Any]
    action: str  # what a success means: created | updated | adopted


class QuickBooksClient(HTTPProviderClient):
    """One QuickBooks company (realm)."""

    name = "quickbooks"

    def __init__(self, ctx: ClientContext) -> None:
        options = ctx.options
        self.options = (options if isinstance(options, QuickBooksOptions)
                        else QuickBooksOptions.model_validate(dict(options or {})))
        self.ctx = ctx
        realm = ctx.credentials.account.get("realm_id") or ctx.credentials.account.get("realmId")
        if not realm:
            raise ProviderError("quickbooks: the account has no realm_id (it arrives with the "
                                "OAuth callback)", ErrorKind.PERMANENT)
        self.realm = str(realm)
        if ctx.base_url:
            host = ctx.base_url.rstrip("/")
        elif ctx.environment == "sandbox" and CAPABILITIES.sandbox_base_url:
            host = CAPABILITIES.sandbox_base_url
        else:
            host = CAPABILITIES.base_url
        self.http = ProviderHTTP(
            ctx.http,
            provider="quickbooks",
            base_url=f"{host}/v3/company/{self.realm}",
            credentials=ctx.credentials,
            auth_headers=_bearer,
            limiter=registry_for(ctx).get("quickbooks", f"{host}|{self.realm}",
                                         CAPABILITIES.rate_limit),
            refresh=ctx.refresh,
            default_retry_after=CAPABILITIES.rate_limit.default_retry_after,
            fault=_fault_hook,
            describe=_describe,
            default_headers={"Accept": "application/json"},
            retry=ctx.retry,
        )
        self._income_account: str | None = self.options.income_account_ref
        self._item_ids: dict[str, str] = {}
        self._customer_ids: dict[str, str] = {}

    # --- plumbing ---------------------------------------------------------------------------

    def _params(self, **extra: Any) -> dict[str, Any]:
        return {"minorversion": self.options.minor_version, **extra}

    @staticmethod
    def _entity_of(kind: str) -> Entity:
        return {"Item": Entity.PRODUCT, "Customer": Entity.CUSTOMER}.get(
            kind, Entity.TRANSACTION)

    def _kind(self, entity: Entity) -> str:
        if entity is Entity.PRODUCT:
            return "Item"
        if entity is Entity.CUSTOMER:
            return "Customer"
        return "Invoice" if self.options.transaction_kind == "invoice" else "SalesReceipt"

    async def query(self, statement: str) -> dict[str, Any]:
        """Run one query-language statement; returns ``QueryResponse``."""
        data = await self.http.json("POST", "/query", params=self._params(),
                                    content=statement.encode("utf-8"),
                                    headers={"Content-Type": "application/text"})
        qr = data.get("QueryResponse") if isinstance(data, Mapping) else None
        return dict(qr) if isinstance(qr, Mapping) else {}

    async def _find(self, kind: str, field: str, values: Sequence[str]) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = []
        unique = sorted(set(values))
        for i in range(0, len(unique), 100):
            chunk = unique[i:i + 100]
            where = (f"{field} = {quote(chunk[0])}" if len(chunk) == 1
                     else f"{field} IN ({', '.join(quote(v) for v in chunk)})")
            if kind in ("Item", "Customer"):
                where += " AND Active IN (true, false)"  # inactive names still clash
            qr = await self.query(f"select * from {kind} where {where} "
                                  f"MAXRESULTS {QUERY_PAGE_MAX}")
            found.extend(r for r in qr.get(kind, []) if isinstance(r, dict))
        return found

    async def _create_one(self, kind: str, body: Mapping[str, Any], key: str) -> dict[str, Any]:
        data = await self.http.json(
            "POST", f"/{kind.lower()}",
            params=self._params(requestid=_single_request_id(f"{self.realm}:{kind}:{key}")),
            json_body=body)
        entity = data.get(kind) if isinstance(data, Mapping) else None
        if not isinstance(entity, dict):
            raise HTTPError(f"quickbooks: creating a {kind} answered no {kind}",
                            ErrorKind.RETRYABLE)
        return entity

    # --- push -------------------------------------------------------------------------------

    async def _push(self, entity: Entity, records: Sequence[OutboundRecord]
                    ) -> list[RecordResult]:
        if entity not in CAPABILITIES.entities:
            raise ProviderError(f"quickbooks does not sync {entity.value}", ErrorKind.PERMANENT)
        if len(records) > BATCH_MAX:
            raise ProviderError(f"{len(records)} records exceed the QuickBooks batch size "
                                f"{BATCH_MAX}", ErrorKind.PERMANENT)
        kind = self._kind(entity)
        results: dict[str, RecordResult] = {}
        ops: list[_Op] = []
        bodies: dict[str, dict[str, Any]] = {}
        removals = [r for r in records if r.operation != "upsert"]
        records_in = records
        records = [r for r in records if r.operation == "upsert"]
        if entity is Entity.TRANSACTION and records:
            # A record-level problem here (no income account) is met again by each record's
            # own lookup below, which fails that record with it.
            with contextlib.suppress(_RecordError):
                await self._prefetch_refs(records)
        for at, record in enumerate(records):
            try:
                bodies[record.local_id] = await self._body(entity, record)
            except _RecordError as exc:
                results[record.local_id] = RecordResult(
                    local_id=record.local_id, ok=False, error_kind=exc.kind, error=str(exc))
            except HTTPError as exc:
                if exc.kind is ErrorKind.AUTH:
                    raise
                # A 429 throttles the realm, not this record: the lookups of the records
                # after it would each wait out the same limit. They fail with it at once,
                # so the run can defer for the provider's wait instead of serving it out
                # once per record.
                throttled = records[at:] if exc.status == 429 else [record]
                for failed in throttled:
                    results[failed.local_id] = RecordResult(
                        local_id=failed.local_id, ok=False, error_kind=exc.kind,
                        error=str(exc), retry_after=exc.retry_after)
                if exc.status == 429:
                    break
        ops.extend(await self._removal_ops(entity, kind, removals, results))
        pending = [r for r in records if r.local_id in bodies]
        # Linked records: update. Need the current SyncToken when the link has none.
        linked = [r for r in pending if r.remote_id]
        tokens = {r.remote_id: r.remote_version for r in linked if r.remote_version}
        missing = [r.remote_id for r in linked if r.remote_id and r.remote_id not in tokens]
        if missing:
            for found in await self._find(kind, "Id", [m for m in missing if m]):
                tokens[str(found["Id"])] = str(found.get("SyncToken", "0"))
        fresh = [r for r in pending if not r.remote_id]
        for record in linked:
            rid = str(record.remote_id)
            if rid not in tokens:  # deleted in QuickBooks: create it again
                log.info("quickbooks.linked_missing", kind=kind, remote_id=rid)
                fresh.append(record)
                continue
            ops.append(_Op(record, "update", self._update_body(
                bodies[record.local_id], rid, tokens[rid]), "updated"))
        if entity is Entity.TRANSACTION and fresh:
            fresh = await self._adopt_by_doc_number(kind, fresh, bodies, ops, results)
        ops.extend(_Op(r, "create", bodies[r.local_id], "created") for r in fresh)
        retry = await self._run_batch(kind, ops, results, allow_retry=True)
        if retry:
            again = await self._second_round(kind, retry, bodies, results)
            await self._run_batch(kind, again, results, allow_retry=False)
        return [results.get(r.local_id) or RecordResult(
            local_id=r.local_id, ok=False, error_kind=ErrorKind.RETRYABLE,
            error="quickbooks: no answer for this record") for r in records_in]

    async def _removal_ops(self, entity: Entity, kind: str, removals: Sequence[OutboundRecord],
                           results: dict[str, RecordResult]) -> list[_Op]:
        """Archive (Active false) items and customers; delete sales receipts and invoices."""
        wanted = "delete" if entity is Entity.TRANSACTION else "archive"
        ops: list[_Op] = []
        linked: list[OutboundRecord] = []
        for record in removals:
            if record.operation != wanted:
                results[record.local_id] = RecordResult(
                    local_id=record.local_id, ok=False, error_kind=ErrorKind.PERMANENT,
                    error=f"quickbooks cannot {record.operation} a {kind}; use {wanted}")
            elif not record.remote_id:
                results[record.local_id] = RecordResult(local_id=record.local_id, ok=True,
                                                        action=f"{wanted}d")
            else:
                linked.append(record)
        if not linked:
            return ops
        current = {str(f["Id"]): str(f.get("SyncToken", "0")) for f in await self._find(
            kind, "Id", [str(r.remote_id) for r in linked])}
        for record in linked:
            rid = str(record.remote_id)
            if rid not in current:  # already gone
                results[record.local_id] = RecordResult(
                    local_id=record.local_id, ok=True, remote_id=rid, action=f"{wanted}d")
            elif wanted == "delete":
                ops.append(_Op(record, "delete", {"Id": rid, "SyncToken": current[rid]},
                               "deleted"))
            else:
                ops.append(_Op(record, "update", {"Id": rid, "SyncToken": current[rid],
                                                  "Active": False, "sparse": True}, "archived"))
        return ops

    @staticmethod
    def _update_body(body: Mapping[str, Any], rid: str, sync_token: str) -> dict[str, Any]:
        return {**body, "Id": rid, "SyncToken": sync_token, "sparse": True}

    async def _adopt_by_doc_number(
        self, kind: str, fresh: list[OutboundRecord], bodies: Mapping[str, dict[str, Any]],
        ops: list[_Op], results: dict[str, RecordResult],
    ) -> list[OutboundRecord]:
        numbers = {r.local_id: str(bodies[r.local_id]["DocNumber"]) for r in fresh
                   if bodies[r.local_id].get("DocNumber")}
        if not numbers:
            return fresh
        by_number = {str(f.get("DocNumber")): f
                     for f in await self._find(kind, "DocNumber", list(numbers.values()))}
        left: list[OutboundRecord] = []
        refused = await adoption_conflicts(
            self.ctx.linked, Entity.TRANSACTION,
            {local: str(by_number[n]["Id"]) for local, n in numbers.items() if n in by_number})
        for record in fresh:
            found = by_number.get(numbers.get(record.local_id, "\0"))
            if found is None:
                left.append(record)
            elif record.local_id in refused:
                results[record.local_id] = RecordResult(
                    local_id=record.local_id, ok=False, error_kind=ErrorKind.PERMANENT,
                    error=f"quickbooks: {refused[record.local_id]}")
            else:
                ops.append(_Op(record, "update", self._update_body(
                    bodies[record.local_id], str(found["Id"]),
                    str(found.get("SyncToken", "0"))), "adopted"))
        return left

    async def _run_batch(self, kind: str, ops: Sequence[_Op], results: dict[str, RecordResult],
                         *, allow_retry: bool) -> list[tuple[_Op, str]]:
        """Send ``ops`` as one batch; fill ``results``; return ops to retry with their code."""
        if not ops:
            return []
        items = [{"bId": f"b{i}", "operation": op.operation, kind: op.body}
                 for i, op in enumerate(ops)]
        # The record's key (a create's names only the record), its content (a create retried
        # with other content is another request, never a replay of the old answer) and the
        # SyncToken it starts from.
        keys = [f"{op.operation}:{op.record.idempotency_key}:{op.record.content_hash}:"
                f"{op.body.get('SyncToken', '')}" for op in ops]
        data = await self.http.json(
            "POST", "/batch", params=self._params(requestid=batch_request_id(keys)),
            json_body={"BatchItemRequest": items}, scopes=("batch",))
        answers = data.get("BatchItemResponse") if isinstance(data, Mapping) else None
        if not isinstance(answers, list):
            raise HTTPError("quickbooks: the batch answer has no BatchItemResponse",
                            ErrorKind.RETRYABLE)
        by_bid = {str(a.get("bId")): a for a in answers if isinstance(a, Mapping)}
        retry: list[tuple[_Op, str]] = []
        for i, op in enumerate(ops):
            answer = by_bid.get(f"b{i}")
            local = op.record.local_id
            if answer is None:
                results[local] = RecordResult(local_id=local, ok=False,
                                              error_kind=ErrorKind.RETRYABLE,
                                              error="quickbooks: the batch skipped this record")
                continue
            entity = answer.get(kind)
            if isinstance(entity, Mapping) and entity.get("Id") is not None:
                results[local] = RecordResult(
                    local_id=local, ok=True, remote_id=str(entity["Id"]),
                    remote_version=str(entity.get("SyncToken", "")) or None, action=op.action)
                if kind == "Item" and entity.get("Name"):
                    self._item_ids[str(entity["Name"]).casefold()] = str(entity["Id"])
                continue
            parts = _fault_parts(answer.get("Fault"))
            ftype, code, text = parts if parts else ("", "0", "no entity and no fault")
            kind_of = classify_fault(ftype, code)
            if kind_of is ErrorKind.AUTH:
                raise HTTPError(f"quickbooks: {text}", ErrorKind.AUTH, code=code)
            if allow_retry and (code in (CODE_DUPLICATE_NAME, CODE_STALE_OBJECT) or (
                    code == CODE_NOT_FOUND and op.operation == "update"
                    and op.record.operation == "upsert")):
                retry.append((op, code))
                continue
            results[local] = RecordResult(local_id=local, ok=False, error_kind=kind_of,
                                          error=f"quickbooks {code}: {text}")
        return retry

    async def _second_round(self, kind: str, retry: Sequence[tuple[_Op, str]],
                            bodies: Mapping[str, dict[str, Any]],
                            results: dict[str, RecordResult]) -> list[_Op]:
        ops: list[_Op] = []
        stale = [op for op, code in retry if code == CODE_STALE_OBJECT]
        # Linked, but deleted in QuickBooks since: create it again.
        ops.extend(_Op(op.record, "create", bodies[op.record.local_id], "created")
                   for op, code in retry if code == CODE_NOT_FOUND)
        dupes = [op for op, code in retry if code == CODE_DUPLICATE_NAME]
        if stale:
            current = {str(f["Id"]): str(f.get("SyncToken", "0")) for f in await self._find(
                kind, "Id", [str(op.body["Id"]) for op in stale])}
            for op in stale:
                rid = str(op.body["Id"])
                if rid in current:
                    ops.append(_Op(op.record, "update",
                                   {**op.body, "SyncToken": current[rid]}, "updated"))
                else:
                    results[op.record.local_id] = RecordResult(
                        local_id=op.record.local_id, ok=False, error_kind=ErrorKind.PERMANENT,
                        error=f"quickbooks: {kind} {rid} no longer exists")
        if dupes:
            name_field = "Name" if kind == "Item" else "DisplayName"
            names = [str(op.body.get(name_field, "")) for op in dupes]
            by_name = {str(f.get(name_field, "")).casefold(): f
                       for f in await self._find(kind, name_field, names)}
            by_email: dict[str, dict[str, Any]] = {}
            emails = [e for op in dupes if (e := _email_of(op.body))]
            if kind == "Customer" and emails:
                by_email = {str(_email_of(f)).casefold(): f
                            for f in await self._find(kind, "PrimaryEmailAddr", emails)}
            matches = {op.record.local_id: by_name.get(str(op.body.get(name_field, ""))
                                                       .casefold())
                       or by_email.get(str(_email_of(op.body)).casefold()) for op in dupes}
            refused = await adoption_conflicts(
                self.ctx.linked, self._entity_of(kind),
                {local: str(f["Id"]) for local, f in matches.items() if f is not None})
            for op in dupes:
                found = matches[op.record.local_id]
                if found is None:
                    results[op.record.local_id] = RecordResult(
                        local_id=op.record.local_id, ok=False, error_kind=ErrorKind.PERMANENT,
                        error=f"quickbooks 6240: the name {op.body.get(name_field)!r} belongs "
                        "to a vendor or employee; map a different DisplayName")
                    continue
                if op.record.local_id in refused:
                    results[op.record.local_id] = RecordResult(
                        local_id=op.record.local_id, ok=False, error_kind=ErrorKind.PERMANENT,
                        error=f"quickbooks: {refused[op.record.local_id]}")
                    continue
                ops.append(_Op(op.record, "update", self._update_body(
                    bodies[op.record.local_id], str(found["Id"]),
                    str(found.get("SyncToken", "0"))), "adopted"))
        return ops

    # --- building bodies ----------------------------------------------------------------------

    async def _body(self, entity: Entity, record: OutboundRecord) -> dict[str, Any]:
        payload = json.loads(json.dumps(dict(record.payload), default=str))
        if entity is Entity.PRODUCT:
            return await self._item_body(payload)
        if entity is Entity.CUSTOMER:
            if not str(payload.get("DisplayName") or "").strip():
                raise _RecordError("quickbooks: DisplayName is required", ErrorKind.PERMANENT)
            payload["DisplayName"] = str(payload["DisplayName"]).strip()
            return dict(payload)
        return await self._sale_body(payload)

    async def _income_account_ref(self) -> str:
        if self._income_account is None:
            qr = await self.query("select * from Account where AccountType = 'Income' "
                                  "MAXRESULTS 1")
            accounts = qr.get("Account") or []
            if not accounts:
                raise _RecordError("quickbooks: the company has no income account; set "
                                   "options.income_account_ref", ErrorKind.PERMANENT)
            self._income_account = str(accounts[0]["Id"])
        return self._income_account

    async def _item_body(self, payload: dict[str, Any]) -> dict[str, Any]:
        if not str(payload.get("Name") or "").strip():
            raise _RecordError("quickbooks: Name is required", ErrorKind.PERMANENT)
        body = dict(payload)
        body["Name"] = str(body["Name"]).strip()
        body.setdefault("Type", self.options.item_type)
        if "UnitPrice" in body:
            body["UnitPrice"] = _number(body["UnitPrice"])
        body["IncomeAccountRef"] = {"value": await self._income_account_ref()}
        return body

    async def _sale_body(self, payload: dict[str, Any]) -> dict[str, Any]:
        body: dict[str, Any] = {k: v for k, v in payload.items()
                                if k not in ("Line", "CustomerRef")}
        lines: list[dict[str, Any]] = []
        for raw in payload.get("Line") or []:
            if not isinstance(raw, Mapping):
                continue
            detail = dict(raw.get("SalesItemLineDetail") or {})
            item_name = str((detail.get("ItemRef") or {}).get("name") or "").strip()
            if not item_name:
                raise _RecordError("quickbooks: a line needs its item's name",
                                   ErrorKind.PERMANENT)
            amount = _number(raw.get("Amount"))
            qty = detail.get("Qty")
            unit = _number(detail.get("UnitPrice"))
            each = unit if unit is not None else (
                round(amount / float(qty), 2) if amount is not None and qty else amount)
            item_id = await self._item_id(item_name, each)
            sd: dict[str, Any] = {"ItemRef": {"value": item_id, "name": item_name}}
            if qty is not None:
                sd["Qty"] = qty
            if unit is not None:
                sd["UnitPrice"] = unit
            line: dict[str, Any] = {"DetailType": "SalesItemLineDetail", "Amount": amount,
                                    "SalesItemLineDetail": sd}
            if raw.get("Description"):
                line["Description"] = str(raw["Description"])
            lines.append(line)
        if not lines:
            raise _RecordError("quickbooks: a transaction needs a line", ErrorKind.PERMANENT)
        body["Line"] = lines
        name = str((payload.get("CustomerRef") or {}).get("name") or "").strip()
        email = str((payload.get("BillEmail") or {}).get("Address") or "").strip()
        customer_id = await self._customer_id(name, email) if (name or email) else None
        if customer_id is not None:
            body["CustomerRef"] = {"value": customer_id}
        elif self.options.transaction_kind == "invoice":
            raise _RecordError("quickbooks: an invoice needs CustomerRef.name or "
                               "BillEmail.Address", ErrorKind.PERMANENT)
        if self.options.transaction_kind == "sales_receipt" and self.options.deposit_account_ref:
            body["DepositToAccountRef"] = {"value": self.options.deposit_account_ref}
        return body

    async def _prefetch_refs(self, records: Sequence[OutboundRecord]) -> None:
        """Resolve (or create) every item and buyer a batch of sales names, in bulk."""
        items: dict[str, float | None] = {}
        buyers: dict[str, tuple[str, str]] = {}
        for record in records:
            p = record.payload
            for line in p.get("Line") or []:
                if not isinstance(line, Mapping):
                    continue
                detail = line.get("SalesItemLineDetail") or {}
                name = str((detail.get("ItemRef") or {}).get("name") or "").strip()
                if name and name.casefold() not in self._item_ids:
                    qty = detail.get("Qty")
                    amount = _number(line.get("Amount"))
                    unit = _number(detail.get("UnitPrice"))
                    items.setdefault(name, unit if unit is not None else (
                        round(amount / float(qty), 2) if amount is not None and qty else amount))
            ref = p.get("CustomerRef")
            bill = p.get("BillEmail")
            name = str((ref or {}).get("name") or "").strip() if isinstance(ref, Mapping) else ""
            email = str((bill or {}).get("Address") or "").strip() if isinstance(
                bill, Mapping) else ""
            key = (name or email).casefold()
            if key and key not in self._customer_ids:
                buyers.setdefault(key, (name, email))
        if items:
            for found in await self._find("Item", "Name", list(items)):
                self._item_ids[str(found.get("Name", "")).casefold()] = str(found["Id"])
            missing = {n: p for n, p in items.items() if n.casefold() not in self._item_ids}
            if missing:
                account = await self._income_account_ref()
                bodies = []
                for name, price in sorted(missing.items()):
                    body: dict[str, Any] = {"Name": name, "Type": self.options.item_type,
                                            "IncomeAccountRef": {"value": account}}
                    if price is not None:
                        body["UnitPrice"] = price
                    bodies.append(body)
                for item in await self._create_many("Item", bodies, "Name"):
                    self._item_ids[str(item["Name"]).casefold()] = str(item["Id"])
        if buyers:
            names = [n for n, _ in buyers.values() if n]
            by_name = {str(f.get("DisplayName", "")).casefold(): str(f["Id"])
                       for f in (await self._find("Customer", "DisplayName", names)
                                 if names else [])}
            left = {}
            for key, (name, email) in buyers.items():
                if name and name.casefold() in by_name:
                    self._customer_ids[key] = by_name[name.casefold()]
                else:
                    left[key] = (name, email)
            emails = [e for _, e in left.values() if e]
            by_email = {str(_email_of(f) or "").casefold(): str(f["Id"])
                        for f in (await self._find("Customer", "PrimaryEmailAddr", emails)
                                  if emails else [])}
            create = []
            for key, (name, email) in left.items():
                if email and email.casefold() in by_email:
                    self._customer_ids[key] = by_email[email.casefold()]
                else:
                    body = {"DisplayName": name or email}
                    if email:
                        body["PrimaryEmailAddr"] = {"Address": email}
                    create.append(body)
            for customer in await self._create_many("Customer", create, "DisplayName"):
                self._customer_ids[str(customer["DisplayName"]).casefold()] = str(
                    customer["Id"])

    async def _create_many(self, kind: str, bodies: Sequence[Mapping[str, Any]],
                           name_field: str) -> list[dict[str, Any]]:
        """Create minimal entities in batches; returns those created (failures are left for
        the per-record path, which reports them)."""
        created: list[dict[str, Any]] = []
        for i in range(0, len(bodies), BATCH_MAX):
            chunk = bodies[i:i + BATCH_MAX]
            keys = [f"{kind}:{str(b[name_field]).casefold()}" for b in chunk]
            data = await self.http.json(
                "POST", "/batch", params=self._params(requestid=batch_request_id(keys)),
                json_body={"BatchItemRequest": [
                    {"bId": f"r{j}", "operation": "create", kind: dict(b)}
                    for j, b in enumerate(chunk)]}, scopes=("batch",))
            for answer in (data or {}).get("BatchItemResponse") or []:
                entity = answer.get(kind) if isinstance(answer, Mapping) else None
                if isinstance(entity, dict) and entity.get("Id") is not None:
                    created.append(entity)
        return created

    async def _item_id(self, name: str, price: float | None) -> str:
        key = name.casefold()
        if key not in self._item_ids:
            found = await self._find("Item", "Name", [name])
            if found:
                self._item_ids[key] = str(found[0]["Id"])
            else:
                body: dict[str, Any] = {"Name": name, "Type": self.options.item_type,
                                        "IncomeAccountRef": {
                                            "value": await self._income_account_ref()}}
                if price is not None:
                    body["UnitPrice"] = price
                try:
                    item = await self._create_one("Item", body, f"item:{key}")
                except HTTPError as exc:
                    if exc.code != CODE_DUPLICATE_NAME:
                        raise
                    item = (await self._find("Item", "Name", [name]) or [{}])[0]
                if "Id" not in item:
                    raise _RecordError(f"quickbooks: cannot find or create item {name!r}",
                                       ErrorKind.RETRYABLE)
                self._item_ids[key] = str(item["Id"])
        return self._item_ids[key]

    async def _customer_id(self, name: str, email: str) -> str:
        key = (name or email).casefold()
        if key in self._customer_ids:
            return self._customer_ids[key]
        found = await self._find("Customer", "DisplayName", [name]) if name else []
        if not found and email:
            found = await self._find("Customer", "PrimaryEmailAddr", [email])
        if found:
            self._customer_ids[key] = str(found[0]["Id"])
            return self._customer_ids[key]
        body: dict[str, Any] = {"DisplayName": name or email}
        if email:
            body["PrimaryEmailAddr"] = {"Address": email}
        try:
            customer = await self._create_one("Customer", body, f"customer:{key}")
        except HTTPError as exc:
            if exc.code == CODE_DUPLICATE_NAME:
                raise _RecordError(f"quickbooks 6240: the name {name!r} belongs to a vendor or "
                                   "employee", ErrorKind.PERMANENT) from None
            raise
        self._customer_ids[key] = str(customer["Id"])
        return self._customer_ids[key]

    # --- pull -------------------------------------------------------------------------------

    async def pull(self, entity: Entity, since: datetime | None) -> AsyncIterator[InboundChange]:
        kind = self._kind(entity)
        now = datetime.now(UTC)
        if since is not None and now - since <= CDC_MAX_AGE:
            data = await self.http.json("GET", "/cdc", params=self._params(
                entities=kind, changedSince=since.astimezone(UTC).isoformat(timespec="seconds")))
            for block in (data or {}).get("CDCResponse") or []:
                for qr in (block or {}).get("QueryResponse") or []:
                    for row in (qr or {}).get(kind) or []:
                        change = self._change(entity, kind, row)
                        if change is not None:
                            yield change
            return
        start = 1
        while True:
            qr = await self.query(f"select * from {kind} STARTPOSITION {start} "
                                  f"MAXRESULTS {QUERY_PAGE_MAX}")
            rows = qr.get(kind) or []
            for row in rows:
                change = self._change(entity, kind, row)
                if change is not None:
                    yield change
            if len(rows) < QUERY_PAGE_MAX:
                return
            start += len(rows)

    def _change(self, entity: Entity, kind: str, row: Any) -> InboundChange | None:
        if not isinstance(row, Mapping) or row.get("Id") is None:
            return None
        meta = row.get("MetaData") if isinstance(row.get("MetaData"), Mapping) else {}
        updated = str((meta or {}).get("LastUpdatedTime") or "")
        created = str((meta or {}).get("CreateTime") or "")
        deleted = row.get("status") == "Deleted"
        change: Any = "deleted" if deleted else ("created" if created and created == updated
                                                else "updated")
        when: datetime | None
        try:
            when = datetime.fromisoformat(updated) if updated else None
        except ValueError:
            when = None
        rid = str(row["Id"])
        return InboundChange(
            provider="quickbooks", entity=entity, remote_id=rid, change=change,
            # The SyncToken is the record's version: two edits within one second of
            # LastUpdatedTime are still two changes.
            dedupe_key=hashlib.sha256(
                f"{self.realm}|{kind}|{rid}|{row.get('SyncToken', '')}|{updated}|{deleted}"
                .encode()).hexdigest()[:32],
            payload=dict(row), occurred_at=when, account_id=self.realm,
            event_type=f"{kind}.{change}",
            fields=None if deleted else inbound_values(
                CAPABILITIES.entities[entity].inbound_fields, row))

    # --- connection -------------------------------------------------------------------------

    async def test_connection(self) -> ConnectionStatus:
        started = asyncio.get_running_loop().time()
        try:
            data = await self.http.json("GET", f"/companyinfo/{self.realm}",
                                        params=self._params())
        except HTTPError as exc:
            if exc.kind is ErrorKind.AUTH:
                raise
            return ConnectionStatus(ok=False, detail=str(exc), account_id=self.realm)
        info = data.get("CompanyInfo") if isinstance(data, Mapping) else None
        name = info.get("CompanyName") if isinstance(info, Mapping) else None
        return ConnectionStatus(
            ok=True, detail=f"company {name or self.realm}", account_id=self.realm,
            latency_ms=round((asyncio.get_running_loop().time() - started) * 1000, 1))


class _RecordError(SyncdError):
    """One record cannot be sent; it fails alone with this kind."""

    def __init__(self, message: str, kind: ErrorKind) -> None:
        super().__init__(message)
        self.kind = kind


def _email_of(body: Mapping[str, Any]) -> str | None:
    addr = body.get("PrimaryEmailAddr")
    if isinstance(addr, Mapping) and addr.get("Address"):
        return str(addr["Address"])
    return None
