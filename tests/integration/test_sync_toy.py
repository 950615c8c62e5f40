"""A small provider and its emulator, for exercising the sync engine on known behaviour.

"Toy" has a batch endpoint for customers (per-record results, one idempotency key per
record), single-record products, batched transactions, deletes, and a change feed to pull.
Its emulator is built on :class:`daemon.testing.emulator.Emulator`, so it has the request
log, idempotent replays, rate limits and fault injection (``reset_after_commit_rate``) that
the bundled emulators have. The tests at the bottom pin the toy's own behaviour.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Sequence
from datetime import datetime
from typing import Any

import httpx
from aiohttp import web
from pydantic import BaseModel, ConfigDict

from daemon.provider import (
    AuthKind,
    Capabilities,
    ClientContext,
    ConnectionStatus,
    Direction,
    EmulatorSettings,
    Entity,
    EntitySupport,
    ErrorKind,
    FieldSpec,
    InboundChange,
    OutboundRecord,
    ProviderError,
    RateLimit,
    RecordResult,
    TemplateSpec,
    WebhookRequest,
    WebhookVerdict,
)
from daemon.testing.emulator import BATCH_SIZE, Emulator, EmulatorServer

CAPS = Capabilities(
    provider="toy",
    display_name="Toy",
    entities={
        Entity.CUSTOMER: EntitySupport(
            Entity.CUSTOMER, frozenset({Direction.PUSH, Direction.PULL}), "contact", 10,
            (FieldSpec("email", "email", required=True), FieldSpec("given_name"),
             FieldSpec("family_name"), FieldSpec("reference_id"),
             FieldSpec("opt_in", "boolean")),
            delete_policies=frozenset({"delete", "archive", "leave"})),
        Entity.PRODUCT: EntitySupport(
            Entity.PRODUCT, frozenset({Direction.PUSH}), "item", 1,
            (FieldSpec("name", required=True), FieldSpec("price", "money"),
             FieldSpec("price_text", "decimal"), FieldSpec("currency", "currency")),
            delete_policies=frozenset({"archive", "leave"})),
        Entity.TRANSACTION: EntitySupport(
            Entity.TRANSACTION, frozenset({Direction.PUSH}), "sale", 5,
            (FieldSpec("amount", "money", required=True), FieldSpec("currency", "currency"),
             FieldSpec("customer_email", "email"), FieldSpec("event_name"))),
    },
    rate_limit=RateLimit(requests_per_second=500.0, burst=20, max_concurrency=4),
    auth=AuthKind.API_KEY,
    credential_keys=("api_key",),
)

TEMPLATE = TemplateSpec(
    name="toy-default", provider="toy", is_default=True,
    mappings={
        "customer": {"email": {"from": "customer.email", "transforms": ["lowercase"]},
                     "given_name": "customer.first_name", "family_name": "customer.last_name",
                     "reference_id": "customer.id"},
        "product": {"name": "event.name", "price": "event.price",
                    "currency": "event.currency"},
        "transaction": {"amount": "order.amount", "currency": "order.currency",
                        "customer_email": "customer.email", "event_name": "event.name"},
    },
)

_PATHS = {Entity.CUSTOMER: "customers", Entity.PRODUCT: "products",
          Entity.TRANSACTION: "sales"}


class ToyEmulator(Emulator):
    name = "toy"
    credential_kind = "api_key"

    def __init__(self, settings: EmulatorSettings | None = None) -> None:
        super().__init__(settings)
        self.api_key = "toy-key-" + uuid.uuid4().hex[:8]
        self.changes: list[dict[str, Any]] = []
        self.record_keys: dict[str, dict[str, Any]] = {}

    def rate_limit(self) -> tuple[float, float]:
        return (500.0, 50.0)

    def authenticate(self, request: web.Request) -> str | None:
        header = request.headers.get("Authorization", "")
        return "acct" if header == f"Bearer {self.api_key}" else None

    def default_credentials(self) -> dict[str, Any]:
        return {"api_key": self.api_key, "account": {"account": "acct"}}

    def routes(self) -> list[web.RouteDef]:
        return [web.post("/v1/{kind}/batch", self._batch),
                web.delete("/v1/{kind}/{id}", self._delete),
                web.get("/v1/changes", self._changes)]

    async def _batch(self, request: web.Request) -> web.Response:
        body = await request.json()
        items = body["records"]
        request[BATCH_SIZE] = len(items)
        kind = request.match_info["kind"]

        # Like Square's bulk create: each record carries its own idempotency key, and a
        # record whose key was seen before gets its first result back.
        results = []
        for item in items:
            key = item.get("key")
            if key and key in self.record_keys:
                results.append(self.record_keys[key])
                continue
            fields = item["fields"]
            if "invalid" in str(fields.get("email", "")):
                result = {"ref": item["ref"], "ok": False, "error": "email is not deliverable"}
            else:
                rid = item.get("id") or f"{kind[:3]}_{uuid.uuid4().hex[:10]}"
                action = "updated" if item.get("id") else "created"
                self.put(kind, rid, {"id": rid, "ref": item["ref"], **fields,
                                     "archived": False})
                result = {"ref": item["ref"], "ok": True, "id": rid, "action": action}
            if key:
                self.record_keys[key] = result
            results.append(result)
        return web.json_response({"results": results})

    async def _delete(self, request: web.Request) -> web.Response:
        kind, rid = request.match_info["kind"], request.match_info["id"]
        records = self.collection(kind)
        if rid not in records:
            return self.error_response(404, "not_found", "no such record")
        if request.query.get("archive") == "1":
            records[rid]["archived"] = True
        else:
            del records[rid]
        return web.json_response({"id": rid, "deleted": True})

    async def _changes(self, request: web.Request) -> web.Response:
        return web.json_response({"changes": self.changes})


class ToyClient:
    def __init__(self, ctx: ClientContext) -> None:
        self.ctx = ctx
        self.base = (ctx.base_url or "").rstrip("/")
        self._calls = 0

    @property
    def api_calls(self) -> int:
        return self._calls

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.ctx.credentials.api_key}"}

    async def _send(self, method: str, path: str, body: Any = None) -> httpx.Response:
        self._calls += 1
        response = await self.ctx.http.request(method, self.base + path, json=body,
                                               headers=self._headers())
        if response.status_code == 401:
            raise ProviderError("unauthorized", ErrorKind.AUTH, status=401)
        if response.status_code == 429:
            raise ProviderError("rate limited", ErrorKind.RETRYABLE, status=429,
                                retry_after=float(response.headers.get("Retry-After", "1")))
        if response.status_code >= 500:
            raise ProviderError(f"server error {response.status_code}", ErrorKind.RETRYABLE,
                                status=response.status_code)
        return response

    async def push(self, entity: Entity, records: Sequence[OutboundRecord]
                   ) -> list[RecordResult]:
        kind = _PATHS[entity]
        results: list[RecordResult] = []
        upserts = [r for r in records if r.operation == "upsert"]
        by_ref: dict[str, RecordResult] = {}
        if upserts:
            body = {"records": [{"ref": r.local_id, "id": r.remote_id, "key": r.idempotency_key,
                                 "fields": dict(r.payload)} for r in upserts]}
            response = await self._send("POST", f"/v1/{kind}/batch", body)
            if response.status_code >= 400:
                raise ProviderError(response.text, ErrorKind.PERMANENT,
                                    status=response.status_code)
            for item in response.json()["results"]:
                if item["ok"]:
                    by_ref[item["ref"]] = RecordResult(item["ref"], True, item["id"],
                                                       action=item["action"])
                else:
                    by_ref[item["ref"]] = RecordResult(item["ref"], False,
                                                       error_kind=ErrorKind.PERMANENT,
                                                       error=item["error"])
        for r in records:
            if r.operation == "upsert":
                results.append(by_ref[r.local_id])
                continue
            archive = "?archive=1" if r.operation == "archive" else ""
            response = await self._send("DELETE", f"/v1/{kind}/{r.remote_id}{archive}")
            ok = response.status_code in (200, 404)
            results.append(RecordResult(r.local_id, ok, r.remote_id,
                                        action="archived" if archive else "deleted",
                                        error_kind=None if ok else ErrorKind.PERMANENT,
                                        error=None if ok else response.text))
        return results

    async def pull(self, entity: Entity, since: datetime | None
                   ) -> AsyncIterator[InboundChange]:
        response = await self._send("GET", "/v1/changes")
        for change in response.json()["changes"]:
            yield InboundChange(provider="toy", entity=entity, remote_id=change["id"],
                                change=change["change"], dedupe_key=change["event_id"],
                                payload=change)

    async def test_connection(self) -> ConnectionStatus:
        response = await self._send("GET", "/v1/changes")
        return ConnectionStatus(response.status_code == 200)

    async def aclose(self) -> None:
        return None


class ToyOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ToyProvider:
    name = "toy"
    capabilities = CAPS

    def options_model(self) -> type[BaseModel]:
        return ToyOptions

    def default_templates(self) -> Sequence[TemplateSpec]:
        return (TEMPLATE,)

    def client(self, ctx: ClientContext) -> ToyClient:
        return ToyClient(ctx)

    def verify_webhook(self, request: WebhookRequest, secret: str) -> WebhookVerdict:
        return WebhookVerdict(False, "toy has no webhooks")

    def parse_webhook(self, request: WebhookRequest) -> list[InboundChange]:
        return []

    def emulator(self, settings: EmulatorSettings) -> web.Application:
        return ToyEmulator(settings).app()


# --- the toy's own behaviour ----------------------------------------------------------------


async def test_toy_batch_replays_same_key_without_duplicating() -> None:
    emu = ToyEmulator()
    async with EmulatorServer(emu) as server, httpx.AsyncClient() as http:
        headers = {"Authorization": f"Bearer {emu.api_key}"}
        body = {"records": [{"ref": "a", "id": None, "key": "k1",
                             "fields": {"email": "a@x.org"}}]}
        first = await http.post(f"{server.url}/v1/customers/batch", json=body, headers=headers)
        again = await http.post(f"{server.url}/v1/customers/batch", json=body, headers=headers)
        assert first.json() == again.json()
        assert len(emu.collection("customers")) == 1


async def test_toy_rejects_bad_records_alone() -> None:
    emu = ToyEmulator()
    async with EmulatorServer(emu) as server, httpx.AsyncClient() as http:
        client = ToyClient(ClientContext("v", _creds(emu), {}, http, base_url=server.url))
        records = [OutboundRecord(Entity.CUSTOMER, str(i), {"email": e}, "h", f"k{i}")
                   for i, e in enumerate(["ok@x.org", "invalid@x.org"])]
        results = await client.push(Entity.CUSTOMER, records)
        assert [r.ok for r in results] == [True, False]
        assert results[1].error_kind is ErrorKind.PERMANENT


def _creds(emu: ToyEmulator) -> Any:
    from daemon.provider import Credentials

    return Credentials(api_key=emu.api_key)
