"""Sync runs that must not stall or corrupt: a row the mapping cannot map, a long
Retry-After, writes after the lease was lost, a template applied by two runs at once."""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator, Sequence
from datetime import datetime
from typing import Any

import asyncpg
import pytest
from aiohttp import web

from daemon.db import init_connection
from daemon.provider import Entity
from daemon.queue import enqueue
from daemon.queue.types import LeaseLost
from daemon.source import SourceReader, SourceRecord, Venue
from daemon.sync import RunOutcome, SyncSettings
from daemon.sync.mappings import resolve_mappings
from daemon.testing.emulator import EmulatorServer
from daemon.testing.platform import create_platform_schema, seed_venue
from daemon.testing.runtime import runtime_for
from daemon.worker import Worker, WorkerConfig
from tests.integration.test_sync_engine import CUSTOMERS, World, add_integration, world
from tests.integration.test_sync_toy import ToyEmulator, ToyProvider

__all__ = ["world"]  # the fixture, shared with test_sync_engine


async def test_a_row_the_mapping_cannot_map_fails_alone(world: World) -> None:
    """An override that passes validation (to_int on a phone number) meets 'n/a': that
    record fails, permanently and visibly; every other record syncs; the next run tries it
    again, and once the row is fixed it syncs."""
    await world.pool.execute("UPDATE customers SET phone = '5550100'")
    bad = await world.pool.fetchval(
        "UPDATE customers SET phone = 'n/a' WHERE id = (SELECT id FROM customers "
        "ORDER BY id LIMIT 1) RETURNING id::text")
    await world.pool.execute(
        "UPDATE integration_configs SET field_mappings = $1",
        {"customer": {"reference_id": {"from": "customer.phone",
                                       "transforms": ["to_int", "to_string"]}}})
    report = await world.engine.run(str(world.venue), "toy", entity=Entity.CUSTOMER)
    assert report.outcome is RunOutcome.OK, report.error
    assert report.status == "partial"
    (customers,) = report.entities
    assert (customers.created, customers.failed) == (CUSTOMERS - 1, 1)
    assert len(world.store("customers")) == CUSTOMERS - 1
    (error,) = report.errors
    assert (error.local_id, error.kind) == (bad, "permanent")
    assert "to_int" in error.error or "n/a" in error.error
    log = await world.pool.fetchrow("SELECT status, error_count, errors FROM sync_logs")
    assert (log["status"], log["error_count"]) == ("partial", 1)
    assert [e["local_id"] for e in log["errors"]] == [bad]
    link = await world.pool.fetchrow(
        "SELECT state, last_error FROM entity_links WHERE local_id = $1", bad)
    assert link["state"] == "failed"
    assert "n/a" in link["last_error"]

    # The next run retries it (and only it) and fails it again, no more.
    report = await world.engine.run(str(world.venue), "toy", entity=Entity.CUSTOMER)
    assert report.outcome is RunOutcome.OK
    assert (report.failed, report.sent) == (1, 0)
    # Fixed at the source: it syncs.
    await world.pool.execute("UPDATE customers SET phone = '5550199' WHERE id = $1::uuid", bad)
    report = await world.engine.run(str(world.venue), "toy", entity=Entity.CUSTOMER)
    assert (report.failed, report.entities[0].created) == (0, 1)
    assert len(world.store("customers")) == CUSTOMERS


class _SlowDownEmulator(ToyEmulator):
    """Answers every call with 429 and ``Retry-After: 3600``."""

    def rate_limited_response(self, retry_after: float) -> web.Response:
        response = super().rate_limited_response(retry_after)
        response.headers["Retry-After"] = str(math.ceil(3600))
        return response


async def test_a_long_retry_after_requeues_the_job_instead_of_sleeping(
    pool: asyncpg.Pool, monkeypatch: pytest.MonkeyPatch,
) -> None:
    async with pool.acquire() as conn:
        await create_platform_schema(conn)
        sample = await seed_venue(conn, customers=12, events=2, orders=3)
    emulator = _SlowDownEmulator()
    emulator.update_settings({"rate_limit_storm": 1.0})
    monkeypatch.setenv("VENUE_TOY_API_KEY", emulator.api_key)
    await add_integration(pool, sample.venue_id)
    async with EmulatorServer(emulator) as server:
        runtime = runtime_for(pool, {"toy": ToyProvider()},
                               sync=SyncSettings(base_urls={"toy": server.url}))
        await runtime.open()
        handler = runtime.sync_handler()
        job_id = await enqueue(pool, venue_id=sample.venue_id, provider="toy",
                               entity_type="customer")
        worker = Worker(pool, handler, WorkerConfig(
            concurrency=1, batch_size=1, poll_seconds=0.05, heartbeat_seconds=0.2,
            lease_seconds=5, maintenance_seconds=0.1))
        task = asyncio.create_task(worker.run())
        try:
            async with asyncio.timeout(30):  # not an hour
                while await pool.fetchval("SELECT attempts = 0 OR status = 'processing' "
                                          "FROM sync_queue WHERE id = $1", job_id):
                    await asyncio.sleep(0.05)
        finally:
            worker.stop()
            await asyncio.wait_for(task, 30)
            await runtime.close()
    row = await pool.fetchrow(
        "SELECT status, error_kind, last_error, extract(epoch FROM run_at - now()) AS wait "
        "FROM sync_queue WHERE id = $1", job_id)
    assert (row["status"], row["error_kind"]) == ("pending", "retryable")
    assert row["wait"] > 3500
    assert "3600" in row["last_error"]
    # The run ended and said why; nothing was linked, nothing is left running.
    log = await pool.fetchrow("SELECT status FROM sync_logs")
    assert log["status"] == "failed"
    assert await pool.fetchval("SELECT count(*) FROM entity_links WHERE state = 'synced'") == 0


async def test_a_run_that_lost_its_lease_moves_no_watermark(world: World) -> None:
    await world.engine.run(str(world.venue), "toy", entity=Entity.PRODUCT)
    before = await world.pool.fetchrow("SELECT * FROM sync_state")

    async def lost(conn: asyncpg.Connection) -> None:
        raise LeaseLost("job 1: lease lost")

    # Nothing changed, so the first write of this full check is the sync state.
    with pytest.raises(LeaseLost):
        await world.engine.run(str(world.venue), "toy", entity=Entity.PRODUCT, full=True,
                               guard=lost)
    after = await world.pool.fetchrow("SELECT * FROM sync_state")
    assert dict(after) == dict(before)
    # The run's own log row is closed all the same, as cancelled.
    statuses = [r["status"] for r in await world.pool.fetch(
        "SELECT status FROM sync_logs ORDER BY started_at")]
    assert statuses == ["completed", "cancelled"]


async def test_a_template_applied_by_two_runs_at_once_is_counted_once(
    world: World, db_url: str,
) -> None:
    template = await world.pool.fetchval(
        "INSERT INTO field_mapping_templates (name, provider, venue_type, mappings) "
        "VALUES ('comedy', 'toy', 'comedy_club', $1) RETURNING id",
        {"customer": {"email": "customer.email"}})
    integration = await world.pool.fetchrow("SELECT * FROM integration_configs")
    caps = ToyProvider().capabilities
    conns: list[Any] = [await asyncpg.connect(db_url) for _ in range(2)]
    try:
        for c in conns:
            await init_connection(c)
        # Both runs read the integration before either applied the template.
        await asyncio.gather(*(resolve_mappings(c, integration, caps) for c in conns))
    finally:
        for c in conns:
            await c.close()
    usage = await world.pool.fetchval(
        "SELECT usage_count FROM field_mapping_templates WHERE id = $1", template)
    assert usage == 1



class _ChangingSource(SourceReader):
    """Changes two customers while a read is under way, after the first chunk: one already
    read (its new version is not), one not yet read, stamped later than every other row."""

    async def read(self, entity: Entity, venue: Venue, *, since: datetime | None = None,
                   include: Sequence[str] = (), chunk_size: int | None = None
                   ) -> AsyncIterator[list[SourceRecord]]:
        first = True
        async for chunk in super().read(entity, venue, since=since, include=include,
                                        chunk_size=5):
            yield chunk
            if first and entity is Entity.CUSTOMER:
                first = False
                await self.pool.execute(
                    "UPDATE customers SET first_name = 'Changed', updated_at = now() "
                    "WHERE id = $1::uuid", chunk[0].local_id)
                await self.pool.execute(
                    "UPDATE customers SET updated_at = now() + interval '1 hour' "
                    "WHERE id = (SELECT id FROM customers ORDER BY id DESC LIMIT 1)")


async def test_a_row_changed_during_a_run_is_sent_by_the_next_run(world: World) -> None:
    world.engine.source = _ChangingSource(world.pool)
    report = await world.engine.run(str(world.venue), "toy", entity=Entity.CUSTOMER)
    assert report.status == "completed"
    world.engine.source = SourceReader(world.pool)
    report = await world.engine.run(str(world.venue), "toy", entity=Entity.CUSTOMER)
    assert report.entities[0].full_check is False
    assert "Changed" in {c.get("given_name") for c in world.store("customers").values()}
