"""The sync engine against the toy emulator on a real platform database."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import asyncpg
import pytest
from structlog.testing import capture_logs

from daemon.credentials import ReferenceCredentialStore, StaticTokens
from daemon.provider import Credentials, Entity, ErrorKind, ProviderError
from daemon.sync import RunOutcome, SyncEngine, SyncError, SyncSettings, recompute_health
from daemon.testing.emulator import EmulatorServer
from daemon.testing.platform import change_rows, create_platform_schema, delete_rows, seed_venue
from tests.integration.test_sync_toy import ToyEmulator, ToyProvider

CUSTOMERS, EVENTS, ORDERS = 37, 4, 23
WRITES = ("POST", "PUT", "PATCH", "DELETE")


@dataclass
class World:
    pool: asyncpg.Pool
    venue: uuid.UUID
    emulator: ToyEmulator
    url: str
    engine: SyncEngine

    def store(self, kind: str) -> dict[str, dict[str, Any]]:
        return self.emulator.collection(kind)

    def writes(self) -> list[Any]:
        return [r for r in self.emulator.requests if r.method in WRITES]


async def add_integration(pool: asyncpg.Pool, venue: uuid.UUID, **extra: Any) -> None:
    values = {"credentials": {"api_key": "env:VENUE_TOY_API_KEY"}, "field_mappings": {},
              "options": {}, "schedules": {}, **extra}
    await pool.execute(
        "INSERT INTO integration_configs (venue_id, provider, venue_name, status, credentials,"
        " field_mappings, options, schedules) VALUES ($1, 'toy', 'The Laugh Factory', "
        "'connected', $2, $3, $4, $5)",
        venue, values["credentials"], values["field_mappings"], values["options"],
        values["schedules"])


@pytest.fixture
async def world(pool: asyncpg.Pool, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[World]:
    async with pool.acquire() as conn:
        await create_platform_schema(conn)
        sample = await seed_venue(conn, customers=CUSTOMERS, events=EVENTS, orders=ORDERS)
    emulator = ToyEmulator()
    monkeypatch.setenv("VENUE_TOY_API_KEY", emulator.api_key)
    await add_integration(pool, sample.venue_id)
    async with EmulatorServer(emulator) as server:
        engine = SyncEngine(pool, {"toy": ToyProvider()}, ReferenceCredentialStore(pool),
                            settings=SyncSettings(base_urls={"toy": server.url},
                                                  max_attempts=2, max_backoff_seconds=0.05,
                                                  overlap_seconds=1.0))
        yield World(pool, sample.venue_id, emulator, server.url, engine)


async def test_initial_sync_creates_every_record_once_and_links_it(world: World) -> None:
    report = await world.engine.run(str(world.venue), "toy")
    assert report.outcome is RunOutcome.OK, report.error
    assert report.status == "completed"
    counts = {e.entity: e.created for e in report.entities}
    assert counts == {Entity.PRODUCT: EVENTS, Entity.CUSTOMER: CUSTOMERS,
                      Entity.TRANSACTION: ORDERS}
    assert len(world.store("customers")) == CUSTOMERS
    assert len(world.store("products")) == EVENTS
    # Customers went in batches of the provider's size (10), not one by one.
    batches = [r.batch_size for r in world.emulator.requests if r.path.endswith("/batch")
               and r.path.startswith("/v1/customers")]
    assert max(b or 0 for b in batches) == 10
    assert len(batches) == 4
    links = await world.pool.fetch(
        "SELECT entity_type, count(*) AS n, count(remote_id) AS linked FROM entity_links "
        "WHERE state = 'synced' GROUP BY entity_type")
    assert {r["entity_type"]: (r["n"], r["linked"]) for r in links} == {
        "product": (EVENTS, EVENTS), "customer": (CUSTOMERS, CUSTOMERS),
        "transaction": (ORDERS, ORDERS)}
    # Money arrives as integer minor units, emails lower-cased by the template's transform.
    customer = next(iter(world.store("customers").values()))
    assert customer["email"] == customer["email"].lower()
    product = next(iter(world.store("products").values()))
    assert isinstance(product["price"], int)
    assert product["currency"] == "USD"


async def test_rerun_without_changes_makes_zero_write_calls(world: World) -> None:
    await world.engine.run(str(world.venue), "toy")
    before = len(world.writes())
    report = await world.engine.run(str(world.venue), "toy")
    assert len(world.writes()) == before
    assert report.sent == 0
    assert report.status == "completed"
    # Even a full check (every row hashed again) sends nothing.
    report = await world.engine.run(str(world.venue), "toy", full=True)
    assert len(world.writes()) == before
    assert report.unchanged == CUSTOMERS + EVENTS + ORDERS


async def test_changed_rows_are_updated_in_place_and_only_they_are_sent(world: World) -> None:
    await world.engine.run(str(world.venue), "toy")
    changed = await change_rows(world.pool, world.venue, "customer", 3)  # type: ignore[arg-type]
    before = {rid: dict(rec) for rid, rec in world.store("customers").items()}
    report = await world.engine.run(str(world.venue), "toy", entity=Entity.CUSTOMER)
    (customers,) = report.entities
    assert customers.updated == 3
    assert customers.created == 0
    assert customers.full_check is False
    # Incremental: only rows changed since the watermark (plus the overlap) were read.
    assert customers.scanned < CUSTOMERS
    after = world.store("customers")
    assert len(after) == CUSTOMERS
    moved = {rec["ref"] for rid, rec in after.items() if rec != before[rid]}
    assert moved == set(changed)


async def test_a_rejected_record_fails_alone_and_is_retried_next_run(world: World) -> None:
    await world.pool.execute(
        "UPDATE customers SET email = 'invalid-' || email WHERE id = ("
        "SELECT id FROM customers ORDER BY id LIMIT 1)")
    report = await world.engine.run(str(world.venue), "toy", entity=Entity.CUSTOMER)
    assert report.status == "partial"
    (customers,) = report.entities
    assert customers.failed == 1
    assert customers.created == CUSTOMERS - 1
    assert report.errors[0].kind == "permanent"
    assert "deliverable" in report.errors[0].error
    log = await world.pool.fetchrow("SELECT * FROM sync_logs ORDER BY started_at DESC LIMIT 1")
    assert log["status"] == "partial"
    assert log["error_count"] == 1
    assert log["success_count"] == CUSTOMERS - 1
    failed = await world.pool.fetchrow("SELECT * FROM entity_links WHERE state = 'failed'")
    assert "deliverable" in failed["last_error"]
    # Fixed at the source: the next (incremental) run sends that record and nothing else.
    await world.pool.execute(
        "UPDATE customers SET email = replace(email, 'invalid-', ''), updated_at = now() "
        "WHERE id::text = $1", failed["local_id"])
    before = len(world.writes())
    report = await world.engine.run(str(world.venue), "toy", entity=Entity.CUSTOMER)
    assert report.status == "completed"
    assert report.entities[0].created == 1
    assert len(world.writes()) == before + 1


async def test_connection_dropped_after_commit_leaves_no_duplicate(world: World) -> None:
    # The provider commits each batch, then the connection drops before the answer: the
    # client believes nothing happened. Retries carry the same idempotency keys.
    world.emulator.update_settings({"reset_after_commit_rate": 1.0})
    report = await world.engine.run(str(world.venue), "toy", entity=Entity.CUSTOMER)
    assert report.outcome is RunOutcome.RETRYABLE
    committed = len(world.store("customers"))
    assert committed > 0
    linked = await world.pool.fetchval("SELECT count(*) FROM entity_links WHERE state='synced'")
    assert linked == 0
    world.emulator.update_settings({"reset_after_commit_rate": 0.0})
    report = await world.engine.run(str(world.venue), "toy", entity=Entity.CUSTOMER)
    assert report.outcome is RunOutcome.OK, report.error
    refs = [rec["ref"] for rec in world.store("customers").values()]
    assert len(refs) == len(set(refs)) == CUSTOMERS


async def test_deletes_follow_the_entity_policy(world: World) -> None:
    await world.pool.execute(
        "UPDATE integration_configs SET schedules = $1",
        {"customer": {"on_delete": "delete"}, "product": {"on_delete": "archive"}})
    await world.engine.run(str(world.venue), "toy", entity=Entity.CUSTOMER)
    await world.engine.run(str(world.venue), "toy", entity=Entity.PRODUCT)
    soft = await delete_rows(world.pool, world.venue, "customer", 2)  # type: ignore[arg-type]
    report = await world.engine.run(str(world.venue), "toy", entity=Entity.CUSTOMER)
    assert report.entities[0].deleted == 2
    assert {r["ref"] for r in world.store("customers").values()}.isdisjoint(soft)
    states = await world.pool.fetch(
        "SELECT state FROM entity_links WHERE local_id = ANY($1)", soft)
    assert {r["state"] for r in states} == {"deleted"}
    # A hard delete is only visible to a full check, which finds the orphaned link.
    async with world.pool.acquire() as conn:
        hard = await delete_rows(conn, world.venue, "product", 1, hard=True)
    report = await world.engine.run(str(world.venue), "toy", entity=Entity.PRODUCT, full=True)
    assert report.entities[0].archived == 1
    archived = [r for r in world.store("products").values() if r["archived"]]
    assert [r["ref"] for r in archived] == hard


async def test_dry_run_sends_nothing_and_writes_nothing(world: World) -> None:
    report = await world.engine.run(str(world.venue), "toy", dry_run=True)
    assert report.sent == CUSTOMERS + EVENTS + ORDERS
    assert {p.operation for e in report.entities for p in e.planned} == {"upsert"}
    assert world.emulator.requests == []
    assert await world.pool.fetchval("SELECT count(*) FROM entity_links") == 0
    assert await world.pool.fetchval("SELECT count(*) FROM sync_logs") == 0


async def test_refused_credentials_put_the_integration_in_error(
        world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VENUE_TOY_API_KEY", "wrong")
    report = await world.engine.run(str(world.venue), "toy", entity=Entity.CUSTOMER)
    assert report.outcome is RunOutcome.AUTH
    row = await world.pool.fetchrow("SELECT status, last_error FROM integration_configs")
    assert row["status"] == "error"
    assert "wrong" not in row["last_error"]
    assert len(world.store("customers")) == 0


async def test_auth_error_refreshes_through_the_credential_store(world: World) -> None:
    tokens = StaticTokens()
    tokens.put(str(world.venue), "toy", Credentials(api_key="stale"))

    async def refresher(venue_id: str, provider: str) -> Credentials:
        return Credentials(api_key=world.emulator.api_key)

    tokens.refresher = refresher
    await world.pool.execute("UPDATE integration_configs SET credentials = $1",
                             {"api_key": "oauth"})
    world.engine.credentials = ReferenceCredentialStore(world.pool, tokens)
    report = await world.engine.run(str(world.venue), "toy", entity=Entity.CUSTOMER)
    assert report.outcome is RunOutcome.OK, report.error
    assert len(world.store("customers")) == CUSTOMERS


async def test_pull_stores_inbound_changes_once(world: World) -> None:
    await world.engine.run(str(world.venue), "toy", entity=Entity.CUSTOMER)
    remote = next(iter(world.store("customers").values()))
    world.emulator.changes = [{"id": remote["id"], "change": "unsubscribed",
                               "event_id": "evt-1"}]
    await world.engine.run(str(world.venue), "toy", entity=Entity.CUSTOMER)
    await world.engine.run(str(world.venue), "toy", entity=Entity.CUSTOMER)
    rows = await world.pool.fetch("SELECT * FROM inbound_changes")
    assert len(rows) == 1
    assert rows[0]["local_id"] == remote["ref"]
    assert rows[0]["change"] == "unsubscribed"
    assert rows[0]["source"] == "pull"


async def test_records_of_work_costs_and_health(world: World) -> None:
    report = await world.engine.run(str(world.venue), "toy")
    log = await world.pool.fetchrow("SELECT * FROM sync_logs")
    assert log["status"] == "completed"
    assert log["api_calls_made"] == report.api_calls > 0
    assert log["bytes_sent"] > 0
    assert json.dumps(log["details"]["entities"]["customer"]["created"]) == str(CUSTOMERS)
    cost = await world.pool.fetchrow("SELECT * FROM integration_costs")
    assert cost["api_calls"] == report.api_calls
    assert cost["records_synced"] == CUSTOMERS + EVENTS + ORDERS
    with capture_logs() as logs:
        health = await recompute_health(world.pool, str(world.venue), "toy",
                                        connection_ok=True, response_ms=12.0)
    assert health.status == "healthy"
    assert health.success_rate == 100.0
    assert any(e["event"] == "health.status_changed" for e in logs)
    row = await world.pool.fetchrow("SELECT health_status FROM integration_configs")
    assert row["health_status"] == "healthy"
    health = await recompute_health(world.pool, str(world.venue), "toy", connection_ok=False)
    assert health.status == "unhealthy"


async def test_template_use_is_counted_once_and_overrides_apply(world: World) -> None:
    template = await world.pool.fetchval(
        "INSERT INTO field_mapping_templates (name, provider, venue_type, mappings) "
        "VALUES ('comedy', 'toy', 'comedy_club', $1) RETURNING id",
        {"customer": {"email": "customer.email", "given_name": "customer.full_name"}})
    await world.pool.execute(
        "UPDATE integration_configs SET field_mappings = $1",
        {"customer": {"family_name": {"const": "Guest"}}})
    await world.engine.run(str(world.venue), "toy", entity=Entity.CUSTOMER)
    await world.engine.run(str(world.venue), "toy", entity=Entity.CUSTOMER)
    usage = await world.pool.fetchval(
        "SELECT usage_count FROM field_mapping_templates WHERE id = $1", template)
    assert usage == 1
    integration = await world.pool.fetchrow("SELECT template_id FROM integration_configs")
    assert integration["template_id"] == template
    record = next(iter(world.store("customers").values()))
    assert record["family_name"] == "Guest"
    assert " " in record["given_name"]


async def test_healing_reports_each_change(world: World) -> None:
    await world.pool.execute(
        "UPDATE integration_configs SET field_mappings = $1",
        {"customer": {"email": None, "Email": "customer.email",
                      "nickname": "customer.first_name"}})
    with capture_logs() as logs:
        report = await world.engine.run(str(world.venue), "toy", entity=Entity.CUSTOMER)
    healed = {(c.action, c.old, c.new) for c in report.healed}
    assert ("retarget", "Email", "email") in healed
    assert ("remove", "nickname", None) in healed
    assert sum(e["event"] == "sync.mapping_healed" for e in logs) == len(report.healed)
    log = await world.pool.fetchrow("SELECT details FROM sync_logs")
    assert len(log["details"]["healed"]) == len(report.healed)


async def test_an_unusable_mapping_is_a_clear_error_and_nothing_is_sent(world: World) -> None:
    await world.pool.execute(
        "UPDATE integration_configs SET field_mappings = $1",
        {"customer": {"email": None}})
    report = await world.engine.run(str(world.venue), "toy", entity=Entity.CUSTOMER)
    assert report.outcome is RunOutcome.CONFIG
    assert "required" in (report.error or "")
    assert world.emulator.requests == []


async def test_unknown_integration_is_refused(world: World) -> None:
    with pytest.raises(SyncError, match="no toy integration"):
        await world.engine.run(str(uuid.uuid4()), "toy")
    with pytest.raises(SyncError, match="unknown provider"):
        await add_integration_for(world, "nope")


async def add_integration_for(world: World, provider: str) -> None:
    await world.pool.execute(
        "INSERT INTO integration_configs (venue_id, provider) VALUES ($1, $2)",
        world.venue, provider)
    await world.engine.run(str(world.venue), provider)


async def test_plugin_http_errors_are_retryable(world: World) -> None:
    world.emulator.update_settings({"error_rate": 1.0})
    report = await world.engine.run(str(world.venue), "toy", entity=Entity.PRODUCT)
    assert report.outcome is RunOutcome.RETRYABLE
    assert report.status == "failed"
    row = await world.pool.fetchrow("SELECT failure_count FROM integration_configs")
    assert row["failure_count"] == 1
    # Nothing was linked; the watermark did not move, so the next run sends everything.
    world.emulator.update_settings({"error_rate": 0.0})
    report = await world.engine.run(str(world.venue), "toy", entity=Entity.PRODUCT)
    assert report.entities[0].created == EVENTS




async def test_health_monitor_checks_connections_and_records_changes(world: World) -> None:
    import asyncio

    from daemon.sync import HealthMonitor

    monitor = HealthMonitor(world.pool, {"toy": ToyProvider()},
                            ReferenceCredentialStore(world.pool), interval=0.05,
                            base_urls={"toy": world.url}, recheck_seconds=0)
    (report,) = await monitor.run_once()
    assert (report.status, report.connection_ok) == ("healthy", True)
    world.emulator.api_key = "rotated"  # the stored key no longer works
    with capture_logs() as logs:
        (report,) = await monitor.run_once()
    assert (report.status, report.previous) == ("unhealthy", "healthy")
    changes = [e for e in logs if e["event"] == "health.status_changed"]
    assert changes[0]["new"] == "unhealthy"
    row = await world.pool.fetchrow(
        "SELECT h.connection_ok, c.health_status FROM integration_health h "
        "JOIN integration_configs c USING (venue_id, provider)")
    assert (row["connection_ok"], row["health_status"]) == (False, "unhealthy")
    stop = asyncio.Event()
    task = asyncio.create_task(monitor.run(stop))
    await asyncio.sleep(0.12)
    stop.set()
    await asyncio.wait_for(task, 2)


async def test_a_plugin_bug_fails_its_batch_not_the_run(world: World,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.integration.test_sync_toy import ToyClient

    real_push = ToyClient.push

    async def flaky(self: ToyClient, entity: Entity, records: Any) -> Any:
        if any(r.local_id == first for r in records):
            raise KeyError("boom")
        return await real_push(self, entity, records)

    first = await world.pool.fetchval("SELECT id::text FROM customers ORDER BY id LIMIT 1")
    monkeypatch.setattr(ToyClient, "push", flaky)
    report = await world.engine.run(str(world.venue), "toy", entity=Entity.CUSTOMER)
    assert report.status == "partial"
    assert report.entities[0].failed == 10  # the batch holding that record
    assert report.entities[0].created == CUSTOMERS - 10
    assert "plugin failed: KeyError" in report.errors[0].error


async def test_a_cancelled_run_stops_between_batches_and_leaves_nothing_running(
        world: World) -> None:
    import asyncio
    import gc

    problems: list[str] = []
    loop = asyncio.get_running_loop()
    loop.set_exception_handler(lambda _loop, ctx: problems.append(ctx["message"]))
    checks = 0

    def cancelled() -> bool:
        nonlocal checks
        checks += 1
        return checks > 2

    report = await world.engine.run(str(world.venue), "toy", entity=Entity.CUSTOMER,
                                    cancelled=cancelled)
    assert report.outcome is RunOutcome.CANCELLED
    assert 0 < report.entities[0].created < CUSTOMERS
    gc.collect()
    await asyncio.sleep(0.05)
    assert problems == []
    assert (await world.pool.fetchval("SELECT status FROM sync_logs")) == "cancelled"
    # The watermark did not move: the next run picks up what was left.
    report = await world.engine.run(str(world.venue), "toy", entity=Entity.CUSTOMER)
    assert report.entities[0].created == CUSTOMERS - 20


async def test_cancelling_while_the_read_ahead_is_full_does_not_hang(world: World) -> None:
    import asyncio

    from daemon.source import SourceReader, SourceSettings

    world.engine.source = SourceReader(world.pool, SourceSettings(chunk_size=2))
    checks = 0

    def cancelled() -> bool:
        nonlocal checks
        checks += 1
        return checks > 1

    report = await asyncio.wait_for(
        world.engine.run(str(world.venue), "toy", entity=Entity.CUSTOMER,
                         cancelled=cancelled), timeout=30)
    assert report.outcome is RunOutcome.CANCELLED


async def test_an_archived_record_is_not_archived_again(world: World) -> None:
    await world.pool.execute("UPDATE integration_configs SET schedules = $1",
                             {"product": {"on_delete": "archive"}})
    await world.engine.run(str(world.venue), "toy", entity=Entity.PRODUCT)
    gone = await delete_rows(world.pool, world.venue, "product", 1)  # type: ignore[arg-type]
    report = await world.engine.run(str(world.venue), "toy", entity=Entity.PRODUCT)
    assert report.entities[0].archived == 1
    assert await world.pool.fetchval(
        "SELECT state FROM entity_links WHERE local_id = ANY($1)", gone) == "archived"
    before = len(world.writes())
    for full in (False, True):
        report = await world.engine.run(str(world.venue), "toy", entity=Entity.PRODUCT,
                                        full=full)
        assert report.entities[0].archived == 0
    assert len(world.writes()) == before


async def test_a_record_restored_after_its_remote_delete_is_created_anew(world: World) -> None:
    await world.pool.execute("UPDATE integration_configs SET schedules = $1",
                             {"customer": {"on_delete": "delete"}})
    await world.engine.run(str(world.venue), "toy", entity=Entity.CUSTOMER)
    [gone] = await delete_rows(world.pool, world.venue, "customer", 1)  # type: ignore[arg-type]
    report = await world.engine.run(str(world.venue), "toy", entity=Entity.CUSTOMER)
    assert report.entities[0].deleted == 1
    await world.pool.execute(
        "UPDATE customers SET deleted_at = NULL, updated_at = now() + interval '1 second' "
        "WHERE id::text = $1", gone)
    report = await world.engine.run(str(world.venue), "toy", entity=Entity.CUSTOMER)
    assert (report.entities[0].created, report.entities[0].failed) == (1, 0)
    link = await world.pool.fetchrow(
        "SELECT remote_id, state FROM entity_links WHERE local_id = $1", gone)
    assert link["remote_id"] is not None
    assert link["state"] == "synced"


@pytest.mark.parametrize("http_tries", [1, 2])
async def test_a_call_that_used_up_its_tries_is_not_tried_again_by_the_engine(
        world: World, monkeypatch: pytest.MonkeyPatch, http_tries: int) -> None:
    """The HTTP layer's tries count against the batch's (one retry policy): a call that
    already made every try of the policy ends the run for the job's retry, while one that
    made a single try is tried again by the engine."""
    from tests.integration.test_sync_toy import ToyClient

    budget = world.engine.retry.call_attempts
    assert budget == 2  # the fixture's SyncSettings(max_attempts=2)
    pushes: dict[str, int] = {}

    async def failing(self: ToyClient, entity: Entity, records: Any) -> Any:
        first = records[0].local_id
        pushes[first] = pushes.get(first, 0) + 1
        raise ProviderError("server error 503", ErrorKind.RETRYABLE, status=503,
                            attempts=http_tries)

    monkeypatch.setattr(ToyClient, "push", failing)
    report = await world.engine.run(str(world.venue), "toy", entity=Entity.CUSTOMER)
    assert report.outcome is RunOutcome.RETRYABLE
    assert max(pushes.values()) == (1 if http_tries >= budget else budget)


async def test_health_covers_integrations_the_config_manages(world: World) -> None:
    """An integration applied from config (status never 'connected': no OAuth grant) gets
    a health status from the monitor instead of staying 'unknown'; one round checks at most
    its batch, the least recently checked first."""
    from daemon.sync import HealthMonitor

    await world.pool.execute("UPDATE integration_configs SET status = 'disconnected'")
    other = uuid.uuid4()
    await add_integration(world.pool, other)
    await world.pool.execute(
        "UPDATE integration_configs SET status = 'disconnected', enabled = false "
        "WHERE venue_id = $1", other)
    monitor = HealthMonitor(world.pool, {"toy": ToyProvider()},
                            ReferenceCredentialStore(world.pool), interval=60,
                            base_urls={"toy": world.url}, batch_size=1)
    (report,) = await monitor.run_once()
    assert (report.venue_id, report.status) == (str(world.venue), "healthy")
    assert await monitor.run_once() == []  # checked within the interval; the other is off
    status = await world.pool.fetchval(
        "SELECT health_status FROM integration_configs WHERE venue_id = $1", world.venue)
    assert status == "healthy"
