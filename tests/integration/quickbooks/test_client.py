"""The QuickBooks client against the QuickBooks emulator, as the sync engine drives it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from daemon.mapping import content_hash
from daemon.provider import (
    ClientContext,
    Credentials,
    EmulatorSettings,
    Entity,
    ErrorKind,
    OutboundRecord,
    ProviderError,
)
from daemon.ratelimit import LimiterRegistry
from daemon.testing.emulator import EmulatorServer
from daemon.testing.kit import VirtualClock
from plugins.quickbooks import QuickBooksProvider
from plugins.quickbooks.client import QuickBooksClient
from plugins.quickbooks.emulator import (
    CLIENT_ID,
    CLIENT_SECRET,
    DEFAULT_REALM,
    QuickBooksEmulator,
)

provider = QuickBooksProvider()
REDIRECT = "https://syncd.example.com/oauth/quickbooks/callback"


class Env:
    def __init__(self, emulator: QuickBooksEmulator, server: EmulatorServer,
                 http: httpx.AsyncClient) -> None:
        self.emulator = emulator
        self.server = server
        self.http = http
        # The client's waits and the emulator's limits on virtual time: the tests assert
        # what arrives, never how long it took.
        self.clock = VirtualClock()
        self.limiters = LimiterRegistry(self.clock)
        emulator.use_clock(self.clock.now)

    @property
    def token(self) -> str:
        return str(self.emulator.default_credentials()["access_token"])

    def client(self, token: str | None = None, refresh: Any = None,
               **options: Any) -> QuickBooksClient:
        ctx = ClientContext(
            venue_id="v1",
            credentials=Credentials(access_token=token or self.token,
                                    account={"realm_id": DEFAULT_REALM}),
            options=options, http=self.http, base_url=self.server.url, refresh=refresh,
            limiters=self.limiters)
        client = provider.client(ctx)
        assert isinstance(client, QuickBooksClient)
        return client

    def stored(self, collection: str) -> list[dict[str, Any]]:
        return list(self.emulator.collection(collection).values())

    def writes(self) -> list[Any]:
        return [r for r in self.emulator.requests if r.method == "POST"
                and not r.path.endswith("/query")]


@pytest.fixture
async def env() -> AsyncIterator[Env]:
    emulator = QuickBooksEmulator(EmulatorSettings(seed=5))
    async with EmulatorServer(emulator) as server, httpx.AsyncClient(timeout=30) as http:
        yield Env(emulator, server, http)


def record(entity: Entity, local_id: str, payload: dict[str, Any], *,
           remote_id: str | None = None, remote_version: str | None = None) -> OutboundRecord:
    digest = content_hash(payload)
    return OutboundRecord(entity=entity, local_id=local_id, payload=payload,
                          content_hash=digest, idempotency_key=f"{local_id}:{digest[:12]}",
                          remote_id=remote_id, remote_version=remote_version)


def customer(i: int, *, name: str | None = None, email: str | None = None,
             **kw: Any) -> OutboundRecord:
    return record(Entity.CUSTOMER, f"c{i}", {
        "DisplayName": name or f"Ada Buyer {i}", "GivenName": "Ada",
        "PrimaryEmailAddr": {"Address": email or f"ada{i}@example.com"}}, **kw)


def sale(i: int, item: str = "Late Show", buyer: str = "Ada Buyer 1") -> OutboundRecord:
    return record(Entity.TRANSACTION, f"o{i}", {
        "DocNumber": f"ORD-{i}", "TxnDate": "2026-03-01",
        "Line": [{"Amount": "25.00", "Description": item,
                  "SalesItemLineDetail": {"ItemRef": {"name": item}, "Qty": 2}}],
        "CustomerRef": {"name": buyer}, "BillEmail": {"Address": "ada1@example.com"}})


async def test_create_customers_in_one_batch_with_requestid(env: Env) -> None:
    results = await env.client().push(Entity.CUSTOMER, [customer(i) for i in range(3)])
    assert [r.action for r in results] == ["created"] * 3
    assert all(r.remote_version == "0" for r in results)
    assert len(env.stored("customer")) == 3
    [batch] = env.writes()
    assert batch.path.endswith("/batch")
    assert batch.batch_size == 3
    assert 0 < len(batch.query["requestid"]) <= 36
    assert int(batch.query["minorversion"]) >= 75


async def test_linked_customer_is_updated_with_its_sync_token(env: Env) -> None:
    client = env.client()
    [made] = await client.push(Entity.CUSTOMER, [customer(1)])
    [upd] = await client.push(Entity.CUSTOMER, [customer(1, name="Ada Lovelace",
                                                         remote_id=made.remote_id,
                                                         remote_version=made.remote_version)])
    assert upd.ok
    assert upd.action == "updated"
    assert upd.remote_id == made.remote_id
    assert upd.remote_version == "1"
    [stored] = env.stored("customer")
    assert stored["DisplayName"] == "Ada Lovelace"
    assert stored["GivenName"] == "Ada"  # sparse update keeps other fields


async def test_stale_sync_token_is_reread_and_applied(env: Env) -> None:
    client = env.client()
    [made] = await client.push(Entity.CUSTOMER, [customer(1)])
    env.stored("customer")[0]["SyncToken"] = "7"  # someone else edited it in QuickBooks
    [upd] = await client.push(Entity.CUSTOMER, [customer(1, name="Ada L",
                                                         remote_id=made.remote_id,
                                                         remote_version="0")])
    assert upd.ok
    assert upd.remote_version == "8"
    assert env.stored("customer")[0]["DisplayName"] == "Ada L"


async def test_duplicate_display_name_adopts_instead_of_duplicating(env: Env) -> None:
    client = env.client()
    [first] = await client.push(Entity.CUSTOMER, [customer(1)])
    # A different local customer (or the same one, unlinked after a crash) with that name.
    [again] = await client.push(Entity.CUSTOMER, [customer(9, name="ada buyer 1",
                                                           email="ada.new@example.com")])
    assert again.ok
    assert again.action == "adopted"
    assert again.remote_id == first.remote_id
    [stored] = env.stored("customer")
    assert stored["PrimaryEmailAddr"]["Address"] == "ada.new@example.com"


async def test_name_taken_by_a_vendor_fails_alone(env: Env) -> None:
    env.emulator._insert("Vendor", DEFAULT_REALM, {"DisplayName": "Acme Supplies"},
                         notify=False)
    results = await env.client().push(Entity.CUSTOMER, [
        customer(1), customer(2, name="Acme Supplies"), customer(3)])
    assert [r.ok for r in results] == [True, False, True]
    assert results[1].error_kind is ErrorKind.PERMANENT
    assert "vendor" in (results[1].error or "")
    assert len(env.stored("customer")) == 2


async def test_a_rejected_record_fails_alone(env: Env) -> None:
    results = await env.client().push(Entity.CUSTOMER, [
        customer(1), customer(2, email="not an email"), customer(3)])
    assert [r.ok for r in results] == [True, False, True]
    assert results[1].error_kind is ErrorKind.PERMANENT
    assert "2050" in (results[1].error or "")


async def test_batch_at_declared_size(env: Env) -> None:
    env.emulator.update_settings({"enforce_rate_limits": False})
    results = await env.client().push(Entity.CUSTOMER, [customer(i) for i in range(30)])
    assert all(r.ok for r in results)
    assert [w.batch_size for w in env.writes()] == [30]


async def test_oversize_batch_is_refused(env: Env) -> None:
    with pytest.raises(ProviderError) as info:
        await env.client().push(Entity.CUSTOMER, [customer(i) for i in range(31)])
    assert info.value.kind is ErrorKind.PERMANENT
    items = [{"bId": f"b{i}", "operation": "create", "Customer": {"DisplayName": f"N{i}"}}
             for i in range(31)]
    async with httpx.AsyncClient(base_url=env.server.url) as raw:
        resp = await raw.post(f"/v3/company/{DEFAULT_REALM}/batch",
                              params={"minorversion": 75},
                              headers={"Authorization": f"Bearer {env.token}"},
                              json={"BatchItemRequest": items})
    assert resp.status_code == 400
    assert resp.json()["Fault"]["type"] == "ValidationFault"
    assert env.stored("customer") == []


async def test_retry_after_lost_response_leaves_one_record(env: Env) -> None:
    client = env.client()
    records = [customer(i) for i in range(3)]
    env.emulator.update_settings({"reset_after_commit_rate": 1.0})
    with pytest.raises(ProviderError) as info:
        await client.push(Entity.CUSTOMER, records)
    assert info.value.kind is ErrorKind.RETRYABLE
    assert len(env.stored("customer")) == 3  # committed; the answers were lost
    env.emulator.update_settings({"reset_after_commit_rate": 0.0})
    results = await client.push(Entity.CUSTOMER, records)
    assert all(r.ok for r in results)
    assert len(env.stored("customer")) == 3
    replays = [r for r in env.emulator.requests if r.path.endswith("/batch")]
    assert len({r.query["requestid"] for r in replays}) == 1  # one requestid, replayed


async def test_sales_resolve_items_and_buyers_and_adopt_by_doc_number(env: Env) -> None:
    client = env.client()
    await client.push(Entity.CUSTOMER, [customer(1)])
    results = await client.push(Entity.TRANSACTION, [sale(1), sale(2, item="Matinee")])
    assert [r.action for r in results] == ["created", "created"]
    receipts = env.stored("transaction")
    assert len(receipts) == 2
    assert {i["Name"] for i in env.stored("product")} == {"Late Show", "Matinee"}
    [buyer] = env.stored("customer")
    assert all(r["CustomerRef"]["value"] == buyer["Id"] for r in receipts)
    assert receipts[0]["TotalAmt"] == 25.0
    # The same sales again, unlinked (a lost result): found by DocNumber, not duplicated.
    again = await env.client().push(Entity.TRANSACTION, [sale(1), sale(2, item="Matinee")])
    assert [r.action for r in again] == ["adopted", "adopted"]
    assert [r.remote_id for r in again] == [r.remote_id for r in results]
    assert len(env.stored("transaction")) == 2
    assert len(env.stored("product")) == 2


async def test_invoices_when_configured(env: Env) -> None:
    results = await env.client(transaction_kind="invoice").push(Entity.TRANSACTION, [sale(1)])
    assert results[0].ok
    [invoice] = env.stored("transaction")
    assert invoice["_kind"] == "Invoice"
    assert invoice["Balance"] == 25.0


async def test_429_is_waited_out(env: Env) -> None:
    env.emulator.update_settings({"rate_limit_scale": 0.1})  # 1 request/s per realm
    client = env.client()
    results = await asyncio.gather(*(client.push(Entity.CUSTOMER, [customer(i)])
                                     for i in range(3)))
    assert all(r[0].ok for r in results)
    assert any(r.status == 429 for r in env.emulator.requests)
    assert len(env.stored("customer")) == 3


def item(i: int) -> OutboundRecord:
    return record(Entity.PRODUCT, f"e{i}", {"Name": f"Late Show {i}", "UnitPrice": "25.00"})


async def test_a_throttled_account_fails_the_rest_of_the_batch_at_once(env: Env) -> None:
    # Every item's body needs the income account (a query): once QuickBooks throttles the
    # realm, asking again for each record of the batch would wait out the same limit once
    # per record. The records fail with the provider's wait and the run defers.
    env.emulator.update_settings({"rate_limit_storm": 1.0, "storm_retry_after": 120})
    results = await env.client().push(Entity.PRODUCT, [item(i) for i in range(5)])
    assert [(r.ok, r.error_kind, r.retry_after) for r in results] == [
        (False, ErrorKind.RETRYABLE, 120.0)] * 5
    assert [r.status for r in env.emulator.requests] == [429]
    assert env.stored("product") == []


async def test_bad_token_is_auth(env: Env) -> None:
    client = env.client(token="not-a-token")
    with pytest.raises(ProviderError) as info:
        await client.push(Entity.CUSTOMER, [customer(1)])
    assert info.value.kind is ErrorKind.AUTH
    with pytest.raises(ProviderError) as info:
        await client.test_connection()
    assert info.value.kind is ErrorKind.AUTH
    assert env.stored("customer") == []


async def _oauth_pair(raw: httpx.AsyncClient) -> dict[str, Any]:
    auth = await raw.get("/connect/oauth2", params={
        "client_id": CLIENT_ID, "response_type": "code", "redirect_uri": REDIRECT,
        "scope": "com.intuit.quickbooks.accounting", "state": "st"})
    assert auth.status_code == 302
    params = httpx.URL(auth.headers["location"]).params
    assert params["realmId"] == DEFAULT_REALM
    assert params["state"] == "st"
    token = await raw.post("/oauth2/v1/tokens/bearer", auth=(CLIENT_ID, CLIENT_SECRET),
                           data={"grant_type": "authorization_code", "code": params["code"],
                                 "redirect_uri": REDIRECT})
    assert token.status_code == 200
    body: dict[str, Any] = token.json()
    assert body["expires_in"] == 3600
    return body


async def test_oauth_needs_basic_client_auth_and_rotates_refresh_tokens(env: Env) -> None:
    async with httpx.AsyncClient(base_url=env.server.url) as raw:
        pair = await _oauth_pair(raw)
        no_auth = await raw.post("/oauth2/v1/tokens/bearer", data={
            "grant_type": "refresh_token", "refresh_token": pair["refresh_token"]})
        assert no_auth.status_code == 401
        refreshed = await raw.post("/oauth2/v1/tokens/bearer", auth=(CLIENT_ID, CLIENT_SECRET),
                                   data={"grant_type": "refresh_token",
                                         "refresh_token": pair["refresh_token"]})
        assert refreshed.status_code == 200
        assert refreshed.json()["refresh_token"] != pair["refresh_token"]
        stale = await raw.post("/oauth2/v1/tokens/bearer", auth=(CLIENT_ID, CLIENT_SECRET),
                               data={"grant_type": "refresh_token",
                                     "refresh_token": pair["refresh_token"]})
        assert stale.status_code == 400
        assert stale.json()["error"] == "invalid_grant"


async def test_expired_token_is_refreshed_once_and_the_push_goes_through(env: Env) -> None:
    async with httpx.AsyncClient(base_url=env.server.url) as raw:
        pair = await _oauth_pair(raw)
    env.emulator.tokens.revoke(pair["access_token"])  # as if it expired
    state = {"refresh": pair["refresh_token"], "calls": 0}

    async def refresh() -> Credentials:
        state["calls"] += 1
        resp = await env.http.post(env.server.url + "/oauth2/v1/tokens/bearer",
                                   auth=(CLIENT_ID, CLIENT_SECRET),
                                   data={"grant_type": "refresh_token",
                                         "refresh_token": state["refresh"]})
        data = resp.json()
        state["refresh"] = data["refresh_token"]
        return Credentials(access_token=data["access_token"],
                           account={"realm_id": DEFAULT_REALM})

    client = env.client(token=pair["access_token"], refresh=refresh)
    [result] = await client.push(Entity.CUSTOMER, [customer(1)])
    assert result.ok
    assert state["calls"] == 1


async def test_pull_by_cdc_and_by_query_pages(env: Env) -> None:
    client = env.client()
    since = datetime.now(UTC) - timedelta(minutes=5)
    await client.push(Entity.CUSTOMER, [customer(i) for i in range(3)])
    changes = [c async for c in client.pull(Entity.CUSTOMER, since)]
    assert sorted(c.remote_id for c in changes) == sorted(
        r["Id"] for r in env.stored("customer"))
    assert all(c.account_id == DEFAULT_REALM and c.change == "created" for c in changes)
    assert any(r.path.endswith("/cdc") for r in env.emulator.requests)
    everything = [c async for c in client.pull(Entity.CUSTOMER, None)]
    assert len(everything) == 3


async def test_requests_below_minor_version_75_are_refused(env: Env) -> None:
    async with httpx.AsyncClient(base_url=env.server.url) as raw:
        resp = await raw.get(f"/v3/company/{DEFAULT_REALM}/companyinfo/{DEFAULT_REALM}",
                             params={"minorversion": 65},
                             headers={"Authorization": f"Bearer {env.token}"})
    assert resp.status_code == 400
    assert "Fault" in resp.json()


async def test_connection_ok(env: Env) -> None:
    status = await env.client().test_connection()
    assert status.ok
    assert status.account_id == DEFAULT_REALM



async def test_archive_customer_and_delete_sale(env: Env) -> None:
    client = env.client()
    [made] = await client.push(Entity.CUSTOMER, [customer(1)])
    [sold] = await client.push(Entity.TRANSACTION, [sale(1)])
    archive = OutboundRecord(entity=Entity.CUSTOMER, local_id="c1", payload={},
                             content_hash="", idempotency_key="c1:archive",
                             remote_id=made.remote_id, operation="archive")
    [archived] = await client.push(Entity.CUSTOMER, [archive])
    assert archived.ok
    assert archived.action == "archived"
    [stored] = env.stored("customer")
    assert stored["Active"] is False
    # An archived name still clashes, and is still adopted (queries ask for inactive too).
    [again] = await client.push(Entity.CUSTOMER, [customer(5, name="Ada Buyer 1")])
    assert again.action == "adopted"
    assert again.remote_id == made.remote_id
    delete = OutboundRecord(entity=Entity.TRANSACTION, local_id="o1", payload={},
                            content_hash="", idempotency_key="o1:delete",
                            remote_id=sold.remote_id, operation="delete")
    [deleted] = await client.push(Entity.TRANSACTION, [delete])
    assert deleted.ok
    assert deleted.action == "deleted"
    assert env.stored("transaction") == []
    [gone] = await client.push(Entity.TRANSACTION, [delete])  # already gone: still ok
    assert gone.ok
    wrong = OutboundRecord(entity=Entity.CUSTOMER, local_id="c1", payload={}, content_hash="",
                           idempotency_key="c1:delete", remote_id=made.remote_id,
                           operation="delete")
    [refused] = await client.push(Entity.CUSTOMER, [wrong])
    assert not refused.ok
    assert refused.error_kind is ErrorKind.PERMANENT


async def test_linked_sale_deleted_in_quickbooks_is_created_again(env: Env) -> None:
    client = env.client()
    [sold] = await client.push(Entity.TRANSACTION, [sale(1)])
    env.emulator.collection("transaction").clear()  # deleted by the bookkeeper
    again = sale(1)
    relinked = OutboundRecord(entity=again.entity, local_id=again.local_id,
                              payload=again.payload, content_hash=again.content_hash,
                              idempotency_key=again.idempotency_key + ":2",
                              remote_id=sold.remote_id, remote_version=sold.remote_version)
    [result] = await client.push(Entity.TRANSACTION, [relinked])
    assert result.ok
    assert result.action == "created"
    assert result.remote_id != sold.remote_id
    assert len(env.stored("transaction")) == 1


async def test_one_log_line_per_push_without_secrets(env: Env) -> None:
    from structlog.testing import capture_logs

    with capture_logs() as logs:
        await env.client().push(Entity.CUSTOMER, [customer(1), customer(2, email="bad")])
    pushed = [e for e in logs if e["event"] == "quickbooks.pushed"]
    assert pushed == [{"event": "quickbooks.pushed", "log_level": "info",
                       "component": "syncd.quickbooks", "entity": "customer", "records": 2,
                       "failed": 1, "api_calls": 1}]
    assert env.token not in repr(logs)
