"""Webhook ingest over HTTP against real Postgres: emulator deliveries stored once, bad ones
refused and not stored, the Mailchimp URL token, the body limit, group commit."""

from __future__ import annotations

import asyncio
import hashlib
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from daemon.provider import EmulatorSettings
from daemon.testing.emulator import EmulatorServer
from tests.integration import webhook_support as ws

PROVIDERS = ("square", "stripe", "mailchimp", "quickbooks")
BASE = "https://syncd.example"


@pytest.fixture(autouse=True)
def _venue_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in ws.ENV.items():
        monkeypatch.setenv(name, value)


async def _count(pool: asyncpg.Pool, provider: str | None = None) -> int:
    if provider is None:
        return int(await pool.fetchval("SELECT count(*) FROM integration_webhooks"))
    return int(await pool.fetchval(
        "SELECT count(*) FROM integration_webhooks WHERE provider = $1", provider))


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_an_emulator_delivery_is_stored_once(
    pool: asyncpg.Pool, tmp_path: Path, provider: str
) -> None:
    await ws.connect_venues(pool)
    async with ws.running_app(pool, tmp_path) as server:
        target = server.url + ws.path_for(provider)
        emulated = EmulatorSettings(webhook_url=target, webhook_secret=ws.secret_for(provider))
        async with EmulatorServer(ws.providers()[provider].emulator(emulated)) as emulator, \
                httpx.AsyncClient() as http:
            sent = await http.post(emulator.url + "/_emulator/webhook", json={
                "collection": "customer", "id": "C1", "change": "updated",
                "url": BASE + ws.path_for(provider)})
            delivery = sent.json()
            assert delivery["delivered_status"] == 200
            assert await _count(pool, provider) == 1
            again = await http.post(target, content=delivery["body"].encode(),
                                    headers=delivery["headers"] | {
                                        "Content-Type": "application/x-www-form-urlencoded"
                                        if provider == "mailchimp" else "application/json"})
    assert again.status_code == 200
    assert again.json() == {"status": "duplicate"}
    assert await _count(pool, provider) == 1
    row = await pool.fetchrow("SELECT * FROM integration_webhooks")
    assert bytes(row["body"]) == delivery["body"].encode()
    assert row["status"] == "pending"
    jobs = await pool.fetch("SELECT lane, provider FROM sync_queue WHERE entity_type = 'webhooks'")
    assert [(j["lane"], j["provider"]) for j in jobs] == [("CRITICAL", provider)]


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_forged_tampered_and_unsigned_deliveries_are_refused_and_not_stored(
    pool: asyncpg.Pool, tmp_path: Path, provider: str
) -> None:
    await ws.connect_venues(pool)
    path, body, headers = ws.signed(provider)
    signature = next(k for k in headers if k != "Content-Type")
    forged = ws.sign(provider, body, BASE + path, secret="not-the-secret")
    async with ws.running_app(pool, tmp_path) as server, httpx.AsyncClient() as http:
        url = server.url + path
        tampered = await http.post(url, content=body + b" ", headers=headers)
        unsigned = await http.post(url, content=body,
                                   headers={"Content-Type": headers["Content-Type"]})
        wrong_key = await http.post(url, content=body, headers=headers | forged)
        garbage = await http.post(url, content=body, headers=headers | {signature: "x" * 40})
        good = await http.post(url, content=body, headers=headers)
    assert [r.status_code for r in (tampered, unsigned, wrong_key, garbage)] == [401] * 4
    assert good.status_code == 200
    assert good.json() == {"status": "stored"}
    assert await _count(pool) == 1


@pytest.mark.parametrize("provider", ["stripe", "mailchimp"])
async def test_a_stale_signed_timestamp_is_refused(
    pool: asyncpg.Pool, tmp_path: Path, provider: str
) -> None:
    await ws.connect_venues(pool)
    path = ws.path_for(provider)
    body, content_type = ws.sample_body(provider)
    import time

    stale = ws.sign(provider, body, BASE + path, timestamp=int(time.time()) - 301)
    async with ws.running_app(pool, tmp_path) as server, httpx.AsyncClient() as http:
        response = await http.post(server.url + path, content=body,
                                   headers={"Content-Type": content_type, **stale})
    assert response.status_code == 401
    assert await _count(pool) == 0


async def test_square_signs_the_public_url_from_settings(
    pool: asyncpg.Pool, tmp_path: Path
) -> None:
    body, content_type = ws.sample_body("square")
    async with ws.running_app(pool, tmp_path) as server, httpx.AsyncClient() as http:
        url = server.url + "/webhooks/square"
        as_seen_locally = ws.sign("square", body, url)
        refused = await http.post(url, content=body,
                                  headers={"Content-Type": content_type, **as_seen_locally})
        public = ws.sign("square", body, BASE + "/webhooks/square")
        accepted = await http.post(url, content=body,
                                   headers={"Content-Type": content_type, **public})
    assert refused.status_code == 401
    assert accepted.status_code == 200


async def test_mailchimp_without_a_signing_secret_needs_the_url_token(
    pool: asyncpg.Pool, tmp_path: Path
) -> None:
    await ws.connect_venues(pool)
    body, content_type = ws.sample_body("mailchimp", 7)
    path = f"/webhooks/mailchimp/{ws.VENUE_MAILCHIMP_TOKEN}"
    headers = {"Content-Type": content_type}
    async with ws.running_app(pool, tmp_path) as server, httpx.AsyncClient() as http:
        url = server.url + path
        validation = await http.get(url)
        missing = await http.post(url, content=body, headers=headers)
        wrong = await http.post(url + "?token=" + "x" * len(ws.MAILCHIMP_URL_TOKEN),
                                content=body, headers=headers)
        good = await http.post(url + "?token=" + ws.MAILCHIMP_URL_TOKEN, content=body,
                               headers=headers)
    assert validation.status_code == 200
    assert [missing.status_code, wrong.status_code, good.status_code] == [401, 401, 200]
    row = await pool.fetchrow("SELECT external_id, venue_id, headers FROM integration_webhooks")
    assert row["venue_id"] == ws.VENUE_MAILCHIMP_TOKEN
    assert row["external_id"] == "sha256:" + hashlib.sha256(body).hexdigest()
    assert ws.MAILCHIMP_URL_TOKEN not in str(dict(row))


async def test_mailchimp_with_a_signing_secret_refuses_a_token_alone(
    pool: asyncpg.Pool, tmp_path: Path
) -> None:
    await ws.connect_venues(pool)
    body, content_type = ws.sample_body("mailchimp")
    path = f"/webhooks/mailchimp/{ws.VENUE_MAILCHIMP}?token={ws.MAILCHIMP_VENUE_SECRET}"
    async with ws.running_app(pool, tmp_path) as server, httpx.AsyncClient() as http:
        response = await http.post(server.url + path, content=body,
                                   headers={"Content-Type": content_type})
    assert response.status_code == 401
    assert await _count(pool) == 0


async def test_unknown_provider_and_venue_are_404(pool: asyncpg.Pool, tmp_path: Path) -> None:
    await ws.connect_venues(pool)
    _path, body, headers = ws.signed("stripe")
    async with ws.running_app(pool, tmp_path) as server, httpx.AsyncClient() as http:
        unknown = await http.post(server.url + "/webhooks/paypal", content=body, headers=headers)
        no_venue = await http.post(
            server.url + "/webhooks/stripe/00000000-0000-4000-8000-0000000000ff",
            content=body, headers=headers)
        not_uuid = await http.post(server.url + "/webhooks/stripe/blue-door", content=body,
                                   headers=headers)
    assert [unknown.status_code, no_venue.status_code, not_uuid.status_code] == [404] * 3
    assert await _count(pool) == 0


async def test_body_limit_wrong_type_and_malformed_body(pool: asyncpg.Pool,
                                                        tmp_path: Path) -> None:
    path = "/webhooks/quickbooks"
    big = b'{"eventNotifications": [], "pad": "' + b"x" * 5000 + b'"}'
    bad_json = b'{"eventNotifications": ['
    nul = b'{"eventNotifications": [], "note": "\\u0000"}'
    async with ws.running_app(pool, tmp_path, webhook_max_body_bytes=4096) as server, \
            httpx.AsyncClient() as http:
        url = server.url + path

        async def post(body: bytes, content_type: str = "application/json") -> int:
            headers = {"Content-Type": content_type, **ws.sign("quickbooks", body, BASE + path)}
            return (await http.post(url, content=body, headers=headers)).status_code

        statuses = [await post(big), await post(bad_json), await post(b"[]", "text/plain"),
                    await post(nul)]
        ok = await post(b'{"eventNotifications": []}')
    assert statuses == [413, 400, 415, 400]
    assert ok == 200
    assert await _count(pool) == 1


async def test_concurrent_deliveries_share_commits_and_each_is_stored(
    pool: asyncpg.Pool, tmp_path: Path
) -> None:
    await ws.connect_venues(pool)
    deliveries = [ws.signed("stripe", n) for n in range(200)]
    async with ws.running_app(pool, tmp_path) as server, httpx.AsyncClient(
            limits=httpx.Limits(max_connections=64)) as http:
        responses = await asyncio.gather(*(
            http.post(server.url + path, content=body, headers=headers)
            for path, body, headers in deliveries + deliveries[:50]))
    assert all(r.status_code == 200 for r in responses)
    assert sum(r.json()["status"] == "stored" for r in responses) == 200
    assert await _count(pool, "stripe") == 200
    assert await pool.fetchval(
        "SELECT count(*) FROM sync_queue WHERE entity_type = 'webhooks'") == 1


async def test_a_repeated_signature_header_is_refused(pool: asyncpg.Pool, tmp_path: Path) -> None:
    path, body, headers = ws.signed("square")
    name = next(k for k in headers if k != "Content-Type")
    repeated = [*headers.items(), (name, headers[name])]
    async with ws.running_app(pool, tmp_path) as server, httpx.AsyncClient() as http:
        response = await http.post(server.url + path, content=body, headers=repeated)
    assert response.status_code == 400
    assert await _count(pool) == 0


async def test_replicas_storing_the_same_events_neither_fail_nor_duplicate(
    pool: asyncpg.Pool,
) -> None:
    from datetime import UTC, datetime

    from daemon.http.store import Delivery, WebhookStore

    stores = [WebhookStore(pool, batch_size=40) for _ in range(3)]

    def delivery(i: int) -> Delivery:
        return Delivery(provider="square", external_id=f"e{i:03d}", venue_id=None,
                        headers_json="{}", payload_json="{}", body=b"{}",
                        content_type="application/json", received_at=datetime.now(UTC))

    # Three replicas get the same 120 events, each in its own order, at the same time.
    events = [delivery(i) for i in range(120)]
    orders = [events, events[::-1], events[60:] + events[:60]]
    try:
        outcomes = await asyncio.gather(*(store.store(d) for store, order in
                                          zip(stores, orders, strict=True) for d in order))
    finally:
        for store in stores:
            await store.close()
    assert outcomes.count("stored") == 120
    assert outcomes.count("duplicate") == 240
    assert await _count(pool) == 120


def _delivery(i: int) -> Any:
    from datetime import UTC, datetime

    from daemon.http.store import Delivery

    return Delivery(provider="square", external_id=f"k{i:03d}", venue_id=None,
                    headers_json="{}", payload_json="{}", body=b"{}",
                    content_type="application/json", received_at=datetime.now(UTC))


async def test_the_writer_takes_another_connection_when_its_own_breaks(
    pool: asyncpg.Pool,
) -> None:
    from daemon.http.store import StoreUnavailable, WebhookStore

    store = WebhookStore(pool)
    try:
        assert await store.store(_delivery(1)) == "stored"
        held = store._conn
        assert held is not None
        await pool.execute("SELECT pg_terminate_backend($1)", held.get_server_pid())
        with pytest.raises(StoreUnavailable):
            await store.store(_delivery(2))
        assert await store.store(_delivery(3)) == "stored"
        assert store._conn is not held
    finally:
        await store.close()
    assert store._conn is None
    assert await _count(pool) == 2


async def test_a_request_cancelled_while_waiting_is_stored_and_the_writer_goes_on(
    pool: asyncpg.Pool,
) -> None:
    from daemon.http.store import WebhookStore

    store = WebhookStore(pool)
    try:
        # The client of the first request goes away while its delivery waits for a commit.
        waiting = asyncio.ensure_future(store.store(_delivery(1)))
        await asyncio.sleep(0)
        waiting.cancel()
        assert await store.store(_delivery(2)) == "stored"
    finally:
        await store.close()
    assert waiting.cancelled()
    assert await _count(pool) == 2


async def test_an_idle_writer_gives_its_connection_back(
    pool: asyncpg.Pool, monkeypatch: pytest.MonkeyPatch,
) -> None:
    from daemon.http import store as store_module

    monkeypatch.setattr(store_module, "IDLE_SECONDS", 0.05)
    store = store_module.WebhookStore(pool)
    try:
        assert await store.store(_delivery(1)) == "stored"
        for _ in range(200):
            if store._conn is None:
                break
            await asyncio.sleep(0.05)
        assert store._conn is None
        assert await store.store(_delivery(2)) == "stored"  # and takes one again
    finally:
        await store.close()
    await asyncio.wait_for(pool.close(), 10)  # nothing is held back from the pool


async def test_requests_the_parser_refuses_log_one_line_not_a_traceback(
    pool: asyncpg.Pool, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from structlog.testing import capture_logs

    async with ws.running_app(pool, tmp_path, http_max_field_size=1024) as server, \
            httpx.AsyncClient() as http:
        with capture_logs() as events:
            response = await http.post(server.url + "/webhooks/square", content=b"{}",
                                       headers={"X-Padding": "a" * 4096})
            healthy = await http.get(server.url + "/healthz")
    assert response.status_code in (400, 431)
    assert healthy.status_code == 200
    assert not [r for r in caplog.records if r.name == "aiohttp.server" and r.exc_info]
    assert [e["event"] for e in events if e["event"].startswith("http.")] == [
        "http.bad_request"]


async def test_deliveries_while_the_database_is_down_are_503_not_500(
    db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from daemon.db import init_connection

    for name, value in ws.ENV.items():
        monkeypatch.setenv(name, value)
    pool = await asyncpg.create_pool(db_url, min_size=0, max_size=2, init=init_connection)
    await ws.connect_venues(pool)
    path, body, headers = ws.signed("stripe")
    async with ws.running_app(pool, tmp_path) as server, httpx.AsyncClient() as http:
        await pool.close()
        response = await http.post(server.url + path, content=body, headers=headers)
        square_path, square_body, square_headers = ws.signed("square")
        app_level = await http.post(server.url + square_path, content=square_body,
                                    headers=square_headers)
        healthy = await http.get(server.url + "/healthz")
    assert (response.status_code, app_level.status_code) == (503, 503)
    assert healthy.status_code == 200
