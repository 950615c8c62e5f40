"""The queue's sync job handler: engine outcomes become job results; fenced writes."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

import asyncpg
import pytest

from daemon.http.jobs import Dispatcher
from daemon.queue.types import Job, LeaseLost, Outcome
from daemon.sync import SyncSettings
from daemon.sync.job import SyncJobHandler
from daemon.testing.emulator import EmulatorServer
from daemon.testing.platform import create_platform_schema, seed_venue
from daemon.testing.runtime import runtime_for
from tests.integration.test_sync_engine import add_integration
from tests.integration.test_sync_toy import ToyEmulator, ToyProvider


@dataclass
class Context:
    pool: asyncpg.Pool
    lose_lease: bool = False
    checks: int = 0

    async def assert_lease(self, conn: asyncpg.Connection) -> None:
        self.checks += 1
        if self.lose_lease:
            raise LeaseLost("job 1: lease lost")

    @property
    def cancelled(self) -> bool:
        return False


def job(venue: uuid.UUID, entity: str = "customer", **payload: object) -> Job:
    return Job(id=1, venue_id=venue, provider="toy", entity_type=entity, operation="sync",
               payload=payload, lane="NORMAL", attempts=1, max_attempts=5,
               lease_token=uuid.uuid4(), correlation_id=None, entity_id=None)


@dataclass
class Setup:
    venue: uuid.UUID
    handler: SyncJobHandler
    emulator: ToyEmulator


@pytest.fixture
async def setup(pool: asyncpg.Pool, monkeypatch: pytest.MonkeyPatch
                ) -> AsyncIterator[Setup]:
    async with pool.acquire() as conn:
        await create_platform_schema(conn)
        sample = await seed_venue(conn, customers=12, events=2, orders=3)
    emulator = ToyEmulator()
    monkeypatch.setenv("VENUE_TOY_API_KEY", emulator.api_key)
    await add_integration(pool, sample.venue_id)
    async with EmulatorServer(emulator) as server:
        runtime = runtime_for(pool, {"toy": ToyProvider()},
                               sync=SyncSettings(base_urls={"toy": server.url}, max_attempts=1))
        async with runtime.opened():
            yield Setup(sample.venue_id, runtime.sync_handler(), emulator)


async def test_a_sync_job_completes_and_checks_its_lease_on_every_write(
        setup: Setup, pool: asyncpg.Pool) -> None:
    ctx = Context(pool)
    result = await setup.handler(job(setup.venue), ctx)
    assert result.outcome is Outcome.COMPLETED
    assert ctx.checks >= 2  # 12 customers in batches of 10
    log = await pool.fetchrow("SELECT job_id, status FROM sync_logs")
    assert (log["job_id"], log["status"]) == (1, "completed")


async def test_a_fenced_worker_commits_nothing(setup: Setup, pool: asyncpg.Pool) -> None:
    result = await setup.handler(job(setup.venue), Context(pool, lose_lease=True))
    assert result.outcome is Outcome.RETRY
    assert await pool.fetchval("SELECT count(*) FROM entity_links") == 0


async def test_refused_credentials_are_an_auth_result(setup: Setup, pool: asyncpg.Pool,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VENUE_TOY_API_KEY", "wrong")
    result = await setup.handler(job(setup.venue), Context(pool))
    assert result.outcome is Outcome.AUTH


async def test_retryable_failures_retry_and_bad_jobs_fail(setup: Setup,
                                                          pool: asyncpg.Pool) -> None:
    setup.emulator.update_settings({"error_rate": 1.0})
    result = await setup.handler(job(setup.venue), Context(pool))
    assert result.outcome is Outcome.RETRY
    assert result.retry_after is not None
    result = await setup.handler(job(setup.venue, entity="invoice"), Context(pool))
    assert result.outcome is Outcome.FAILED
    result = await setup.handler(job(uuid.uuid4()), Context(pool))
    assert result.outcome is Outcome.FAILED
    assert "no toy integration" in (result.error or "")


async def test_the_runtime_builds_one_handler_on_its_own_engine(pool: asyncpg.Pool) -> None:
    runtime = runtime_for(pool, {"toy": ToyProvider()})
    async with runtime.opened():
        handler = runtime.job_handler()
        assert isinstance(handler, Dispatcher)
        assert isinstance(handler.default, SyncJobHandler)
        # The engine is the runtime's: one per process, with its limiters and retry policy.
        assert handler.default.engine is runtime.engine
        assert runtime.engine.limiters is runtime.limiters
        assert runtime.engine.retry is runtime.retry
        assert runtime.job_handler().default.engine is runtime.engine  # type: ignore[attr-defined]
