"""The worker's limits hold: concurrency, database connections, the LISTEN connection."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import asyncpg
import pytest
from structlog.testing import capture_logs

from daemon.db import PoolTimeout, open_pool
from daemon.queue import Job, JobContext, JobResult, NewJob, Outcome, enqueue, enqueue_many
from daemon.worker import Worker, WorkerConfig

FAST = WorkerConfig(concurrency=4, batch_size=4, lease_seconds=5, heartbeat_seconds=0.1,
                    poll_seconds=0.05, retry_base_seconds=0.01, retry_cap_seconds=0.02,
                    grace_seconds=5, maintenance_seconds=0.1)


async def _run_until(worker: Worker, done: Callable[[], Awaitable[bool]],
                     timeout: float = 30) -> None:
    task = asyncio.create_task(worker.run())
    try:
        async with asyncio.timeout(timeout):
            while not await done():
                if task.done():
                    task.result()
                await asyncio.sleep(0.02)
    finally:
        worker.stop()
        await asyncio.wait_for(task, 30)


async def _jobs(pool: asyncpg.Pool, n: int) -> None:
    await enqueue_many(pool, [NewJob(venue_id=uuid.uuid4(), provider="square",
                                     entity_type="products") for _ in range(n)])


def _finished(pool: asyncpg.Pool | str, n: int) -> Callable[[], Awaitable[bool]]:
    """True once ``n`` jobs have finished. Given a database URL (for tests that starve the
    worker's pool on purpose), it looks on a connection of its own, never the pool's."""
    query = "SELECT count(*) FROM sync_queue WHERE status NOT IN ('pending', 'processing')"

    async def check() -> bool:
        if isinstance(pool, str):
            conn = await asyncpg.connect(pool)
            try:
                done = await conn.fetchval(query)
            finally:
                await conn.close()
        else:
            done = await pool.fetchval(query)
        return bool(done >= n)
    return check


async def test_concurrency_is_a_hard_limit(pool: asyncpg.Pool) -> None:
    """A worker with concurrency 4 never runs more than 4 handlers at once, nor holds more
    than 4 leases, however its claim loops interleave."""
    running = 0
    most = 0
    leases: list[int] = []

    async def handler(job: Job, ctx: JobContext) -> JobResult:
        nonlocal running, most
        running += 1
        most = max(most, running)
        try:
            leases.append(await ctx.pool.fetchval(
                "SELECT count(*) FROM sync_queue WHERE status = 'processing'"))
            await asyncio.sleep(0.2)
        finally:
            running -= 1
        return JobResult(Outcome.COMPLETED)

    for round_ in range(1, 4):  # each start races the claim loops against each other
        await _jobs(pool, 8)
        await _run_until(Worker(pool, handler, FAST), _finished(pool, 8 * round_))
    assert most <= FAST.concurrency, f"ran {most} jobs at once"
    assert max(leases) <= FAST.concurrency


async def test_a_job_that_cannot_get_a_connection_is_retried_not_hung(db_url: str) -> None:
    """Every job holds one pooled connection and asks for a second while the pool has none
    left: the second acquire times out into a retry, and the heartbeat (on the worker's own
    connection) keeps every lease meanwhile."""
    pool = await open_pool(db_url, min_size=1, max_size=3, acquire_timeout=0.5)
    try:
        holding = 0
        all_hold = asyncio.Event()
        tries: list[int] = []

        async def handler(job: Job, ctx: JobContext) -> JobResult:
            nonlocal holding
            tries.append(job.id)
            if job.attempts > 1:
                return JobResult(Outcome.COMPLETED)
            async with ctx.pool.acquire() as conn:
                await conn.execute("SELECT 1")
                holding += 1
                if holding == 2:
                    all_hold.set()
                await asyncio.wait_for(all_hold.wait(), 10)
                async with ctx.pool.acquire() as second:
                    await second.execute("SELECT 1")
            return JobResult(Outcome.COMPLETED)

        await _jobs(pool, 2)
        config = WorkerConfig(concurrency=2, batch_size=2, lease_seconds=1.0,
                              heartbeat_seconds=0.2, poll_seconds=0.05,
                              retry_base_seconds=0.01, retry_cap_seconds=0.02,
                              maintenance_seconds=0.1)
        await _run_until(Worker(pool, handler, config), _finished(db_url, 2), timeout=30)
        rows = await pool.fetch("SELECT status, attempts, error_kind, last_error "
                                "FROM sync_queue ORDER BY id")
        assert [r["status"] for r in rows] == ["completed", "completed"]
        # Retried because of the pool, never reclaimed because of a lost lease.
        assert all(r["error_kind"] == "retryable" for r in rows), rows
        assert any("no database connection" in (r["last_error"] or "") for r in rows), rows
    finally:
        await pool.close()


async def test_an_acquire_on_an_exhausted_pool_times_out(db_url: str) -> None:
    pool = await open_pool(db_url, min_size=1, max_size=1, acquire_timeout=0.2)
    try:
        async with pool.acquire():
            with pytest.raises(PoolTimeout, match=r"no database connection free within 0\.2 s"):
                await pool.fetchval("SELECT 1")
            with pytest.raises(PoolTimeout):
                await pool.acquire()
        assert await pool.fetchval("SELECT 1") == 1
    finally:
        await pool.close()


@pytest.fixture
async def admin(db_url: str) -> AsyncIterator[asyncpg.Connection]:
    conn = await asyncpg.connect(db_url)
    yield conn
    await conn.close()


async def test_the_listen_connection_is_restored_after_it_is_lost(
    pool: asyncpg.Pool, admin: asyncpg.Connection,
) -> None:
    """Every backend is terminated, the LISTEN connection's with them: the worker says so,
    listens again, and a NOTIFY wakes it again (its polling is an hour away)."""
    seen: list[int] = []

    async def handler(job: Job, ctx: JobContext) -> JobResult:
        seen.append(job.id)
        return JobResult(Outcome.COMPLETED)

    config = WorkerConfig(concurrency=2, batch_size=2, poll_seconds=3600,
                          heartbeat_seconds=0.2, lease_seconds=5, maintenance_seconds=3600)
    worker = Worker(pool, handler, config, maintenance=False)
    with capture_logs() as logs:
        task = asyncio.create_task(worker.run())
        try:
            async with asyncio.timeout(30):
                first = await enqueue(pool, venue_id=uuid.uuid4(), provider="square",
                                      entity_type="products")
                while first not in seen:
                    await asyncio.sleep(0.02)
                # As a Postgres restart does: every other backend of the database goes.
                await admin.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND pid <> pg_backend_pid()")
                while not any(e["event"] == "worker.listen_restored" for e in logs):
                    await asyncio.sleep(0.02)
                # The queue's insert trigger sends the NOTIFY; nothing else wakes the worker.
                second = await enqueue(pool, venue_id=uuid.uuid4(), provider="square",
                                       entity_type="products")
                while second not in seen:
                    await asyncio.sleep(0.02)
        finally:
            worker.stop()
            await asyncio.wait_for(task, 30)
    events = [e["event"] for e in logs]
    assert events.index("worker.listen_lost") < events.index("worker.listen_restored")


async def test_sync_jobs_on_a_pool_sized_for_their_concurrency_all_complete(
    db_url: str, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Four sync jobs, a pool of four connections: each job reads its source in chunks and
    looks up links while it reads. None waits for ever, none loses its lease, each runs
    once."""
    from daemon.sync import SyncSettings
    from daemon.testing.emulator import EmulatorServer
    from daemon.testing.platform import create_platform_schema, seed_venue
    from daemon.testing.runtime import runtime_for
    from tests.integration.test_sync_engine import add_integration
    from tests.integration.test_sync_toy import ToyEmulator, ToyProvider

    monkeypatch.setenv("SYNCD_SOURCE_CHUNK_SIZE", "3")
    pool = await open_pool(db_url, min_size=1, max_size=4, acquire_timeout=20)
    try:
        venues = []
        async with pool.acquire() as conn:
            await create_platform_schema(conn)
            for i in range(4):
                sample = await seed_venue(conn, venue_id=uuid.uuid4(), name=f"Hall {i}",
                                          customers=20, events=2, orders=4)
                venues.append(sample.venue_id)
        emulator = ToyEmulator()
        monkeypatch.setenv("VENUE_TOY_API_KEY", emulator.api_key)
        for venue in venues:
            await add_integration(pool, venue)
        async with EmulatorServer(emulator) as server:
            runtime = runtime_for(pool, {"toy": ToyProvider()},
                                   sync=SyncSettings(base_urls={"toy": server.url}))
            await runtime.open()
            handler = runtime.sync_handler()
            await enqueue_many(pool, [NewJob(venue_id=v, provider="toy", entity_type="all")
                                      for v in venues])
            config = WorkerConfig(concurrency=4, batch_size=4, lease_seconds=2.0,
                                  heartbeat_seconds=0.5, poll_seconds=0.05,
                                  maintenance_seconds=0.2)
            try:
                await _run_until(Worker(pool, handler, config), _finished(db_url, 4),
                                 timeout=60)
            finally:
                await runtime.close()
        rows = await pool.fetch("SELECT status, attempts, error_kind FROM sync_queue")
        assert [(r["status"], r["attempts"], r["error_kind"]) for r in rows] == [
            ("completed", 1, None)] * 4
        assert len(emulator.collection("customers")) == 4 * 20
    finally:
        await pool.close()


async def test_a_worker_process_listens_again_after_postgres_drops_its_connections(
    db_url: str, admin: asyncpg.Connection, tmp_path: Path,
) -> None:
    """``syncd worker`` as deployed: its backends are terminated; it logs the loss and the
    recovery, and a job enqueued afterwards is woken by NOTIFY (its poll is an hour)."""
    from tests.integration.test_worker_crash import _wait_for, _wait_until, _Workers

    await admin.execute("CREATE TABLE results (job_id bigint, owner text)")
    await admin.execute("CREATE TABLE started (owner text)")
    with _Workers(db_url, tmp_path) as workers:
        proc = workers.start("w", hang=False, settings={"SYNCD_QUEUE_POLL_SECONDS": "3600",
                                                         "SYNCD_SCHEDULER_POLL_SECONDS": "3600"})
        await _wait_until(lambda: "worker.started" in workers.log("w"))
        await _enqueue_raw(admin)
        await _wait_for(admin, "SELECT count(*) = 1 FROM results", timeout=30)
        await admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()")
        await _wait_until(lambda: "worker.listen_restored" in workers.log("w"), timeout=30)
        await _enqueue_raw(admin)
        await _wait_for(admin, "SELECT count(*) = 2 FROM results", timeout=30)
        workers.stop(proc, "w")
    log = workers.log("w")
    assert log.index("worker.listen_lost") < log.index("worker.listen_restored")


async def _enqueue_raw(conn: asyncpg.Connection) -> None:
    await conn.execute("INSERT INTO sync_queue (venue_id, provider, entity_type) "
                       "VALUES ($1, 'square', 'products')", uuid.uuid4())
