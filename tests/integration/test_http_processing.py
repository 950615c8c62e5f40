"""Background processing of stored webhook events: each emulator's delivery becomes an
inbound change of the right venue and a targeted HIGH-lane sync; events that match nothing
are ignored with a reason; failures are retried, then marked failed."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from daemon.http.jobs import Dispatcher
from daemon.http.processing import WebhookProcessor
from daemon.provider import EmulatorSettings, InboundChange, Provider, WebhookRequest
from daemon.queue.types import Job, JobContext, JobResult, Outcome
from daemon.testing.emulator import EmulatorServer
from plugins.mailchimp.webhooks import subscriber_hash
from tests.integration import webhook_support as ws

BASE = "https://syncd.example"
EXPECTED = {
    "square": (ws.VENUE_SQUARE, "C1"),
    "quickbooks": (ws.VENUE_QUICKBOOKS, "C1"),
    "stripe": (ws.VENUE_STRIPE, "C1"),
    "mailchimp": (ws.VENUE_MAILCHIMP, subscriber_hash("buyer@example.com")),
}


@pytest.fixture(autouse=True)
def _venue_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in ws.ENV.items():
        monkeypatch.setenv(name, value)


def _mailchimp_member(server: EmulatorServer) -> None:
    emulator = server.emulator
    assert emulator is not None
    member_hash = subscriber_hash("buyer@example.com")
    emulator.put("customer", f"a1b2c3d4e5/{member_hash}", {
        "id": member_hash, "email_address": "buyer@example.com", "unique_email_id": "u1",
        "list_id": "a1b2c3d4e5", "merge_fields": {"FNAME": "Ada"}})


async def _deliver_from_emulator(pool: asyncpg.Pool, tmp_path: Path, provider: str) -> None:
    async with ws.running_app(pool, tmp_path) as server:
        target = server.url + ws.path_for(provider)
        emulated = EmulatorSettings(webhook_url=target, webhook_secret=ws.secret_for(provider))
        async with EmulatorServer(ws.providers()[provider].emulator(emulated)) as emulator, \
                httpx.AsyncClient() as http:
            record = "C1"
            if provider == "mailchimp":
                _mailchimp_member(emulator)
                record = subscriber_hash("buyer@example.com")
            sent = await http.post(emulator.url + "/_emulator/webhook", json={
                "collection": "customer", "id": record, "change": "updated",
                "url": BASE + ws.path_for(provider)})
    assert sent.json()["delivered_status"] == 200


async def _process(pool: asyncpg.Pool, provider: str,
                   providers: Mapping[str, Provider] | None = None) -> JobResult:
    job = await ws.processing_job(pool, provider)
    processor = WebhookProcessor(providers or ws.providers(), max_attempts=3)
    return await processor(job, ws.FakeLease(pool))


@pytest.mark.parametrize("provider", sorted(EXPECTED))
async def test_an_emulator_delivery_becomes_an_inbound_change_and_a_targeted_sync(
    pool: asyncpg.Pool, tmp_path: Path, provider: str
) -> None:
    await ws.connect_venues(pool)
    await _deliver_from_emulator(pool, tmp_path, provider)
    result = await _process(pool, provider)
    venue, remote_id = EXPECTED[provider]
    assert result.outcome is Outcome.COMPLETED
    event = await pool.fetchrow("SELECT status, venue_id, event_type, error "
                                "FROM integration_webhooks")
    assert (event["status"], event["venue_id"], event["error"]) == ("processed", venue, None)
    assert event["event_type"]
    changes = await pool.fetch("SELECT venue_id, provider, entity_type, remote_id, source "
                               "FROM inbound_changes")
    assert [tuple(c) for c in changes] == [(venue, provider, "customer", remote_id, "webhook")]
    syncs = await pool.fetch("SELECT venue_id, provider, entity_type, lane, status "
                             "FROM sync_queue WHERE entity_type <> 'webhooks'")
    assert [tuple(s) for s in syncs] == [(venue, provider, "customer", "HIGH", "pending")]


async def test_a_linked_remote_record_names_its_local_record(pool: asyncpg.Pool,
                                                              tmp_path: Path) -> None:
    await ws.connect_venues(pool)
    await pool.execute(
        "INSERT INTO entity_links (venue_id, provider, entity_type, local_id, remote_id) "
        "VALUES ($1, 'stripe', 'customer', 'buyer-42', 'C1')", ws.VENUE_STRIPE)
    await _deliver_from_emulator(pool, tmp_path, "stripe")
    await _process(pool, "stripe")
    assert await pool.fetchval("SELECT local_id FROM inbound_changes") == "buyer-42"


async def _store(pool: asyncpg.Pool, tmp_path: Path, provider: str,
                 deliveries: list[tuple[str, bytes, dict[str, str]]]) -> None:
    async with ws.running_app(pool, tmp_path) as server, httpx.AsyncClient() as http:
        for path, body, headers in deliveries:
            response = await http.post(server.url + path, content=body, headers=headers)
            assert response.status_code == 200, response.text


def _square(merchant: str, n: int, event_type: str = "customer.updated"
            ) -> tuple[str, bytes, dict[str, str]]:
    import json

    body = json.dumps({"merchant_id": merchant, "type": event_type, "event_id": f"e{n}",
                       "data": {"type": "customer", "id": f"C{n}", "object": {}}}).encode()
    path = "/webhooks/square"
    return path, body, {"Content-Type": "application/json",
                        **ws.sign("square", body, BASE + path)}


async def test_events_that_match_nothing_are_ignored_with_the_reason(
    pool: asyncpg.Pool, tmp_path: Path
) -> None:
    await ws.connect_venues(pool)
    await pool.execute(
        "INSERT INTO integration_configs (venue_id, provider, credentials) VALUES "
        "($1, 'square', $2), ($3, 'square', $2)", uuid.uuid4(),
        {"account": {"merchant_id": "SHARED"}}, uuid.uuid4())
    await _store(pool, tmp_path, "square", [
        _square("NOBODY", 1), _square("SHARED", 2), _square("MLEMULATOR0001", 3, "labor.shift"),
    ])
    result = await _process(pool, "square")
    assert result.outcome is Outcome.COMPLETED
    rows = await pool.fetch("SELECT external_id, status, error FROM integration_webhooks "
                            "ORDER BY external_id")
    assert [(r["external_id"], r["status"]) for r in rows] == [
        ("e1", "ignored"), ("e2", "ignored"), ("e3", "ignored")]
    assert "no venue is connected to square account NOBODY" in rows[0]["error"]
    assert "square account SHARED is connected to 2 venues" in rows[1]["error"]
    assert rows[2]["error"]
    assert await pool.fetchval("SELECT count(*) FROM inbound_changes") == 0
    assert await pool.fetchval(
        "SELECT count(*) FROM sync_queue WHERE entity_type <> 'webhooks'") == 0


class _Exploding:
    """Square, except that parsing one event raises (a plugin breaking its contract)."""

    def __init__(self, inner: Provider, bad: bytes) -> None:
        self.inner = inner
        self.bad = bad
        self.name = inner.name
        self.capabilities = inner.capabilities

    def parse_webhook(self, request: WebhookRequest) -> list[InboundChange]:
        if self.bad in request.body:
            raise RuntimeError("parser broke")
        return self.inner.parse_webhook(request)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


async def test_a_failing_event_is_retried_then_marked_failed_and_others_go_on(
    pool: asyncpg.Pool, tmp_path: Path
) -> None:
    await ws.connect_venues(pool)
    await _store(pool, tmp_path, "square", [_square("MLEMULATOR0001", 1),
                                            _square("MLEMULATOR0001", 2)])
    providers: dict[str, Any] = {**ws.providers()}
    providers["square"] = _Exploding(providers["square"], b'"e1"')
    outcomes = []
    for _ in range(3):
        outcomes.append((await _process(pool, "square", providers)).outcome)
        await pool.execute("UPDATE sync_queue SET status = 'pending' "
                           "WHERE entity_type = 'webhooks'")
    assert outcomes == [Outcome.RETRY] * 3
    rows = await pool.fetch("SELECT external_id, status, retry_count, error "
                            "FROM integration_webhooks ORDER BY external_id")
    assert [(r["external_id"], r["status"], r["retry_count"]) for r in rows] == [
        ("e1", "failed", 3), ("e2", "processed", 0)]
    assert rows[0]["error"] == "RuntimeError: parser broke"
    assert (await _process(pool, "square", providers)).outcome is Outcome.COMPLETED


async def test_the_worker_handler_routes_webhook_jobs_to_the_processor() -> None:
    seen: list[str] = []

    def recorder(name: str) -> Any:
        async def handle(job: Job, ctx: JobContext) -> JobResult:
            seen.append(name)
            return JobResult(Outcome.COMPLETED)
        return handle

    dispatcher = Dispatcher(recorder("webhooks"), recorder("sync"))
    base = {"id": 1, "venue_id": uuid.uuid4(), "provider": "square", "operation": "sync",
            "payload": {}, "lane": "CRITICAL", "attempts": 1, "max_attempts": 10,
            "lease_token": uuid.uuid4(), "correlation_id": None, "entity_id": None}
    for entity_type in ("webhooks", "customer"):
        await dispatcher(Job.from_record({**base, "entity_type": entity_type}), None)  # type: ignore[arg-type]
    assert seen == ["webhooks", "sync"]


async def test_any_stored_event_has_a_processing_job(pool: asyncpg.Pool) -> None:
    await pool.execute(
        "INSERT INTO integration_webhooks (provider, event_type, external_id, payload) "
        "VALUES ('stripe', '', 'a', '{}'), ('stripe', '', 'b', '{}'), ('square', '', 'c', '{}')")
    await pool.execute(
        "INSERT INTO integration_webhooks (provider, event_type, external_id, payload) "
        "VALUES ('stripe', '', 'd', '{}')")
    jobs = await pool.fetch("SELECT venue_id, provider, lane, operation, status "
                            "FROM sync_queue ORDER BY provider")
    assert [tuple(j) for j in jobs] == [
        (uuid.UUID(int=0), "square", "CRITICAL", "sync", "pending"),
        (uuid.UUID(int=0), "stripe", "CRITICAL", "sync", "pending")]
