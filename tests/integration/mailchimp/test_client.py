"""The Mailchimp client against the Mailchimp emulator, as the sync engine drives it."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from aiohttp import web

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
from plugins.mailchimp import MailchimpProvider
from plugins.mailchimp.client import MailchimpClient
from plugins.mailchimp.emulator import DEFAULT_LIST_ID, DEFAULT_STORE_ID, MailchimpEmulator
from plugins.mailchimp.webhooks import subscriber_hash

provider = MailchimpProvider()


class Env:
    def __init__(self, emulator: MailchimpEmulator, server: EmulatorServer,
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
    def api_key(self) -> str:
        return str(self.emulator.default_credentials()["api_key"])

    def client(self, api_key: str | None = None, **options: Any) -> MailchimpClient:
        ctx = ClientContext(
            venue_id="v1",
            credentials=Credentials(api_key=api_key or self.api_key,
                                    account={"account": "acct"}),
            options={"list_id": DEFAULT_LIST_ID, "store_id": DEFAULT_STORE_ID, **options},
            http=self.http, base_url=self.server.url, limiters=self.limiters)
        client = provider.client(ctx)
        assert isinstance(client, MailchimpClient)
        return client

    def members(self) -> list[dict[str, Any]]:
        return list(self.emulator.collection("customer").values())


@pytest.fixture
async def env() -> AsyncIterator[Env]:
    emulator = MailchimpEmulator(EmulatorSettings(seed=3))
    async with EmulatorServer(emulator) as server, httpx.AsyncClient(timeout=30) as http:
        yield Env(emulator, server, http)


def member(i: int, *, email: str | None = None, remote_id: str | None = None,
           opt_in: bool = True, fname: str = "Ada") -> OutboundRecord:
    payload: dict[str, Any] = {
        "email_address": email or f"buyer{i}@example.com",
        "marketing_opt_in": opt_in,
        "merge_fields": {"FNAME": fname, "LNAME": f"Buyer {i}"},
        "tags": ["tickets"],
    }
    digest = content_hash(payload)
    return OutboundRecord(entity=Entity.CUSTOMER, local_id=f"c{i}", payload=payload,
                          content_hash=digest, idempotency_key=f"k-c{i}-{digest[:8]}",
                          remote_id=remote_id)


async def test_create_members_in_one_batch(env: Env) -> None:
    records = [member(i) for i in range(3)] + [member(3, opt_in=False)]
    results = await env.client().push(Entity.CUSTOMER, records)
    assert [r.ok for r in results] == [True] * 4
    assert [r.action for r in results] == ["created"] * 4
    assert results[0].remote_id == subscriber_hash("buyer0@example.com")
    by_email = {m["email_address"]: m for m in env.members()}
    assert by_email["buyer0@example.com"]["status"] == "subscribed"
    assert by_email["buyer3@example.com"]["status"] == "transactional"
    assert by_email["buyer1@example.com"]["merge_fields"]["FNAME"] == "Ada"
    assert [t["name"] for t in by_email["buyer2@example.com"]["tags"]] == ["tickets"]
    writes = [r for r in env.emulator.requests if r.method == "POST"]
    # One batch subscribe; its members carry their tags (Mailchimp's release note of
    # 2022-01-24; the emulator's description is corrected to match).
    assert len(writes) == 1
    assert writes[0].batch_size == 4


async def test_double_opt_in_makes_new_members_pending(env: Env) -> None:
    await env.client(double_opt_in=True).push(Entity.CUSTOMER, [member(1)])
    assert env.members()[0]["status"] == "pending"


async def test_linked_member_is_updated_and_keeps_its_status(env: Env) -> None:
    client = env.client()
    [first] = await client.push(Entity.CUSTOMER, [member(1)])
    env.members()[0]["status"] = "unsubscribed"  # the person unsubscribed in Mailchimp
    [second] = await client.push(Entity.CUSTOMER, [member(1, fname="Grace",
                                                          remote_id=first.remote_id)])
    assert second.ok
    assert second.action == "updated"
    assert second.remote_id == first.remote_id
    [stored] = env.members()
    assert stored["merge_fields"]["FNAME"] == "Grace"
    assert stored["status"] == "unsubscribed"


async def test_existing_member_is_adopted_by_email_hash(env: Env) -> None:
    async with httpx.AsyncClient(base_url=env.server.url) as raw:
        auth = base64.b64encode(f"x:{env.api_key}".encode()).decode()
        created = await raw.post(f"/3.0/lists/{DEFAULT_LIST_ID}/members",
                                 headers={"Authorization": f"Basic {auth}"},
                                 json={"email_address": "Buyer7@Example.com",
                                       "status": "unsubscribed"})
        assert created.status_code == 200
    [result] = await env.client().push(Entity.CUSTOMER, [member(7, email="buyer7@example.com")])
    assert result.ok
    assert result.action == "adopted"
    assert result.remote_id == subscriber_hash("buyer7@example.com")
    [stored] = env.members()
    assert stored["status"] == "unsubscribed"  # never resubscribed by a push
    assert stored["merge_fields"]["FNAME"] == "Ada"


async def test_batch_at_declared_size_is_one_call(env: Env) -> None:
    env.emulator.settings = EmulatorSettings(enforce_rate_limits=False)
    records = [member(i) for i in range(500)]
    results = await env.client().push(Entity.CUSTOMER, records)
    assert all(r.ok for r in results)
    assert len(env.members()) == 500
    sizes = [r.batch_size for r in env.emulator.requests if r.batch_size is not None]
    assert sizes == [500]


async def test_oversize_batch_is_refused(env: Env) -> None:
    with pytest.raises(ProviderError) as info:
        await env.client().push(Entity.CUSTOMER, [member(i) for i in range(501)])
    assert info.value.kind is ErrorKind.PERMANENT
    async with httpx.AsyncClient(base_url=env.server.url) as raw:
        auth = base64.b64encode(f"x:{env.api_key}".encode()).decode()
        resp = await raw.post(
            f"/3.0/lists/{DEFAULT_LIST_ID}", headers={"Authorization": f"Basic {auth}"},
            json={"members": [{"email_address": f"m{i}@example.com", "status": "subscribed"}
                              for i in range(501)], "update_existing": True})
    assert resp.status_code == 400
    assert resp.headers["content-type"].startswith("application/problem+json")
    problem = resp.json()
    assert problem["status"] == 400
    assert {"type", "title", "detail", "instance"} <= set(problem)
    assert problem["errors"][0]["field"] == "members"
    assert env.members() == []


async def test_retry_after_lost_response_leaves_one_member(env: Env) -> None:
    client = env.client()
    records = [member(i) for i in range(3)]
    env.emulator.update_settings({"reset_after_commit_rate": 1.0})
    with pytest.raises(ProviderError) as info:
        await client.push(Entity.CUSTOMER, records)
    assert info.value.kind is ErrorKind.RETRYABLE
    assert len(env.members()) == 3  # committed, but every answer was lost
    env.emulator.update_settings({"reset_after_commit_rate": 0.0})
    results = await client.push(Entity.CUSTOMER, records)
    assert [r.action for r in results] == ["adopted"] * 3
    assert len(env.members()) == 3


async def test_429_is_retried_and_classified(env: Env) -> None:
    env.emulator.update_settings({"rate_limit_scale": 0.1})  # one connection, 1 request/s
    client = env.client()
    kinds: list[ErrorKind] = []

    async def push_until_done(record: OutboundRecord) -> int:
        for attempt in range(1, 20):
            try:
                [result] = await client.push(Entity.PRODUCT, [record])
            except ProviderError as exc:  # the whole call ran out of retries
                kinds.append(exc.kind)
                continue
            if result.ok:
                return attempt
            assert result.error_kind is ErrorKind.RETRYABLE, result.error
        raise AssertionError("never pushed")

    await asyncio.gather(*(push_until_done(product(i)) for i in range(4)))
    assert set(kinds) <= {ErrorKind.RETRYABLE}
    assert any(r.status == 429 for r in env.emulator.requests)
    assert len(env.emulator.collection("product")) == 4


async def test_a_rejected_member_fails_alone(env: Env) -> None:
    records = [member(1), member(2, email="nobody@localhost"), member(3)]
    results = await env.client().push(Entity.CUSTOMER, records)
    assert [r.ok for r in results] == [True, False, True]
    assert results[1].error_kind is ErrorKind.PERMANENT
    assert "valid email" in (results[1].error or "")
    assert len(env.members()) == 2


async def test_bad_api_key_is_auth(env: Env) -> None:
    client = env.client(api_key="0" * 32 + "-us6")
    with pytest.raises(ProviderError) as info:
        await client.push(Entity.CUSTOMER, [member(1)])
    assert info.value.kind is ErrorKind.AUTH
    assert "0" * 32 not in str(info.value)
    with pytest.raises(ProviderError) as info:
        await client.test_connection()
    assert info.value.kind is ErrorKind.AUTH
    assert env.members() == []


async def test_connection_ok(env: Env) -> None:
    status = await env.client().test_connection()
    assert status.ok
    assert status.account_id == "mc-account-1"


async def test_pull_reports_unsubscribes_since(env: Env) -> None:
    client = env.client()
    await client.push(Entity.CUSTOMER, [member(i) for i in range(3)])
    since = datetime.now(UTC) - timedelta(minutes=1)
    env.members()[1]["status"] = "unsubscribed"
    changes = [c async for c in client.pull(Entity.CUSTOMER, since)]
    assert len(changes) == 3
    unsub = [c for c in changes if c.change == "unsubscribed"]
    assert [c.remote_id for c in unsub] == [env.members()[1]["id"]]
    assert all(c.account_id == DEFAULT_LIST_ID for c in changes)
    future = datetime.now(UTC) + timedelta(hours=1)
    assert [c async for c in client.pull(Entity.CUSTOMER, future)] == []


def product(i: int, remote_id: str | None = None, title: str = "Show") -> OutboundRecord:
    payload = {"title": f"{title} {i}", "vendor": "Hall",
               "variants": [{"price": "12.50", "inventory_quantity": 100}]}
    digest = content_hash(payload)
    return OutboundRecord(entity=Entity.PRODUCT, local_id=f"event-{i}", payload=payload,
                          content_hash=digest, idempotency_key=f"k-p{i}", remote_id=remote_id)


def order(i: int, product_id: str = "event-1", remote_id: str | None = None) -> OutboundRecord:
    payload = {"currency_code": "USD", "order_total": "25.00", "financial_status": "paid",
               "customer": {"email_address": f"buyer{i}@example.com", "opt_in_status": False},
               "lines": [{"product_id": product_id, "product_title": "Late Show",
                          "quantity": 2, "price": "25.00"}]}
    digest = content_hash(payload)
    return OutboundRecord(entity=Entity.TRANSACTION, local_id=f"order-{i}", payload=payload,
                          content_hash=digest, idempotency_key=f"k-o{i}", remote_id=remote_id)


async def test_products_upsert_by_local_id(env: Env) -> None:
    client = env.client()
    [created] = await client.push(Entity.PRODUCT, [product(1)])
    [updated] = await client.push(Entity.PRODUCT, [product(1, remote_id=created.remote_id,
                                                           title="Late")])
    assert created.remote_id == updated.remote_id == "event-1"
    [stored] = env.emulator.collection("product").values()
    assert stored["title"] == "Late 1"
    assert stored["variants"][0]["price"] == 12.5


async def test_order_creates_missing_product_and_adopts_on_retry(env: Env) -> None:
    client = env.client()
    [first] = await client.push(Entity.TRANSACTION, [order(1, product_id="event-9")])
    assert first.ok
    assert first.action == "created"
    [prod] = env.emulator.collection("product").values()
    assert prod["title"] == "Late Show"
    [again] = await client.push(Entity.TRANSACTION, [order(1, product_id="event-9")])
    assert again.ok
    assert again.action == "adopted"
    assert len(env.emulator.collection("transaction")) == 1


async def test_an_order_refused_with_a_page_that_is_not_json_fails_alone() -> None:
    # A proxy in front of Mailchimp answers the order call with an HTML page.
    emulator = MailchimpEmulator(EmulatorSettings(seed=3))
    app = emulator.app()

    @web.middleware
    async def proxy(request: web.Request, handler: Any) -> web.StreamResponse:
        if request.method == "POST" and request.path.endswith("/orders"):
            return web.Response(status=400, text="<html>proxy: request refused</html>",
                                content_type="text/html")
        return await handler(request)

    app.middlewares.append(proxy)
    async with EmulatorServer(app) as server, httpx.AsyncClient(timeout=30) as http:
        [result] = await Env(emulator, server, http).client().push(
            Entity.TRANSACTION, [order(1)])
    assert not result.ok
    assert result.error_kind is ErrorKind.PERMANENT
    assert "proxy: request refused" in (result.error or "")


async def test_products_need_a_store(env: Env) -> None:
    client = env.client(store_id=None)
    [result] = await client.push(Entity.PRODUCT, [product(1)])
    assert not result.ok
    assert result.error_kind is ErrorKind.PERMANENT
    assert "store_id" in (result.error or "")


async def test_oauth_code_grant_gives_a_token_that_works(env: Env) -> None:
    async with httpx.AsyncClient(base_url=env.server.url) as raw:
        auth = await raw.get("/oauth2/authorize", params={
            "response_type": "code", "client_id": "app", "state": "s1",
            "redirect_uri": "https://syncd.example.com/oauth/mailchimp/callback"})
        assert auth.status_code == 302
        query = httpx.URL(auth.headers["location"]).params
        assert query["state"] == "s1"
        token = await raw.post("/oauth2/token", data={
            "grant_type": "authorization_code", "client_id": "app", "client_secret": "x",
            "redirect_uri": "https://syncd.example.com/oauth/mailchimp/callback",
            "code": query["code"]})
        assert token.status_code == 200
        body = token.json()
        assert body["expires_in"] == 0
        assert "refresh_token" not in body
        meta = await raw.get("/oauth2/metadata",
                             headers={"Authorization": f"OAuth {body['access_token']}"})
        assert meta.json()["dc"] == "us6"
        reused = await raw.post("/oauth2/token", data={
            "grant_type": "authorization_code", "client_id": "app", "client_secret": "x",
            "redirect_uri": "https://syncd.example.com/oauth/mailchimp/callback",
            "code": query["code"]})
        assert reused.status_code == 400
    ctx = ClientContext(venue_id="v1", credentials=Credentials(
        access_token=body["access_token"], account={"account": "oauth"}),
        options={"list_id": DEFAULT_LIST_ID}, http=env.http, base_url=env.server.url)
    assert (await provider.client(ctx).test_connection()).ok


async def test_pages_are_capped_at_1000(env: Env) -> None:
    async with httpx.AsyncClient(base_url=env.server.url) as raw:
        auth = base64.b64encode(f"x:{env.api_key}".encode()).decode()
        resp = await raw.get(f"/3.0/lists/{DEFAULT_LIST_ID}/members",
                             params={"count": 1001},
                             headers={"Authorization": f"Basic {auth}"})
    assert resp.status_code == 400


async def test_archive_member_and_delete_product(env: Env) -> None:
    client = env.client()
    [made] = await client.push(Entity.CUSTOMER, [member(1)])
    [prod] = await client.push(Entity.PRODUCT, [product(1)])
    archive = OutboundRecord(entity=Entity.CUSTOMER, local_id="c1", payload={},
                             content_hash="", idempotency_key="c1:archive",
                             remote_id=made.remote_id, operation="archive")
    mixed = await client.push(Entity.CUSTOMER, [archive, member(2)])
    assert [r.action for r in mixed] == ["archived", "created"]
    assert {m["email_address"]: m["status"] for m in env.members()} == {
        "buyer1@example.com": "archived", "buyer2@example.com": "subscribed"}
    delete = OutboundRecord(entity=Entity.PRODUCT, local_id="event-1", payload={},
                            content_hash="", idempotency_key="p1:delete",
                            remote_id=prod.remote_id, operation="delete")
    [deleted] = await client.push(Entity.PRODUCT, [delete])
    assert deleted.action == "deleted"
    assert env.emulator.collection("product") == {}
    [again] = await client.push(Entity.PRODUCT, [delete])  # already gone: still ok
    assert again.ok


async def test_missing_store_is_created_on_the_audience(env: Env) -> None:
    client = env.client(store_id="new-store", store_currency="EUR")
    [result] = await client.push(Entity.PRODUCT, [product(1)])
    assert result.ok
    store = env.emulator.collection("store")["new-store"]
    assert store["list_id"] == DEFAULT_LIST_ID
    assert store["currency_code"] == "EUR"
    [again] = await client.push(Entity.PRODUCT, [product(2)])
    assert again.ok
    gets = [r for r in env.emulator.requests if r.method == "GET"
            and r.path == "/3.0/ecommerce/stores/new-store"]
    assert len(gets) == 1  # checked once per client


async def test_two_records_with_one_email_are_settled_before_pushing(env: Env) -> None:
    # One e-mail is one member: the second record would overwrite the first's member, so it
    # fails (naming the first) and nothing of it is sent.
    results = await env.client().push(Entity.CUSTOMER, [
        member(1, email="same@example.com"), member(2, email="Same@Example.com")])
    assert [r.action for r in results] == ["created", ""]
    assert not results[1].ok
    assert results[1].error_kind is ErrorKind.PERMANENT
    assert "local record c1" in (results[1].error or "")
    (held,) = env.members()
    assert held["merge_fields"]["LNAME"] == "Buyer 1"


async def test_one_log_line_per_push_without_secrets(env: Env) -> None:
    from structlog.testing import capture_logs

    with capture_logs() as logs:
        await env.client().push(Entity.CUSTOMER, [member(1), member(2)])
    pushed = [e for e in logs if e["event"] == "mailchimp.pushed"]
    assert len(pushed) == 1
    assert pushed[0]["records"] == 2
    assert pushed[0]["failed"] == 0
    assert pushed[0]["api_calls"] == 1
    assert env.api_key not in repr(logs)
