"""The worker in-process: outcomes, retries, dead letters, lease loss, graceful shutdown."""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from collections.abc import Awaitable, Callable

import asyncpg
import pytest

from daemon.queue import Job, JobContext, JobResult, Outcome, enqueue
from daemon.worker import Worker
from tests.integration.test_worker_limits import FAST, _run_until


def _status(pool: asyncpg.Pool, job_id: int) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        status = await pool.fetchval("SELECT status FROM sync_queue WHERE id = $1", job_id)
        return status not in ("pending", "processing")
    return check


async def _one(pool: asyncpg.Pool, **kwargs: object) -> int:
    job_id = await enqueue(pool, venue_id=uuid.uuid4(), provider="square",
                           entity_type="products", **kwargs)  # type: ignore[arg-type]
    assert job_id is not None
    return job_id


async def test_completed_jobs_are_recorded_once(pool: asyncpg.Pool) -> None:
    seen: list[int] = []

    async def handler(job: Job, ctx: JobContext) -> JobResult:
        seen.append(job.id)
        return JobResult(Outcome.COMPLETED)

    ids = [await _one(pool) for _ in range(20)]

    async def all_done() -> bool:
        return await pool.fetchval(
            "SELECT count(*) FROM sync_queue WHERE status = 'completed'") == 20

    await _run_until(Worker(pool, handler, FAST), all_done)
    assert sorted(seen) == sorted(ids)
    row = await pool.fetchrow("SELECT lease_token, lease_owner, attempts FROM sync_queue LIMIT 1")
    assert tuple(row) == (None, None, 1)


async def test_exceptions_retry_with_backoff_then_dead_letter(pool: asyncpg.Pool) -> None:
    calls = 0

    async def handler(job: Job, ctx: JobContext) -> JobResult:
        nonlocal calls
        calls += 1
        raise RuntimeError(f"provider down (attempt {job.attempts})")

    job_id = await _one(pool, max_attempts=3)
    await _run_until(Worker(pool, handler, FAST), _status(pool, job_id))
    row = await pool.fetchrow("SELECT * FROM sync_queue WHERE id = $1", job_id)
    assert row["status"] == "dead_letter"
    assert row["attempts"] == 3
    assert row["error_count"] == 3
    assert row["error_kind"] == "retryable"
    assert row["last_error"] == "RuntimeError: provider down (attempt 3)"
    assert calls == 3


async def test_retry_waits_at_least_retry_after(pool: asyncpg.Pool) -> None:
    async def handler(job: Job, ctx: JobContext) -> JobResult:
        return JobResult(Outcome.RETRY, error="429", retry_after=3600)

    job_id = await _one(pool)

    async def retried() -> bool:
        return await pool.fetchval(
            "SELECT attempts = 1 AND status = 'pending' FROM sync_queue WHERE id = $1", job_id)

    await _run_until(Worker(pool, handler, FAST), retried)
    wait = await pool.fetchval(
        "SELECT extract(epoch FROM run_at - now()) FROM sync_queue WHERE id = $1", job_id)
    assert wait > 3500


@pytest.mark.parametrize(("outcome", "kind"), [(Outcome.AUTH, "auth"),
                                               (Outcome.FAILED, "permanent")])
async def test_auth_and_permanent_failures_are_not_retried(
    pool: asyncpg.Pool, outcome: Outcome, kind: str
) -> None:
    async def handler(job: Job, ctx: JobContext) -> JobResult:
        return JobResult(outcome, error="no")

    job_id = await _one(pool)
    await _run_until(Worker(pool, handler, FAST), _status(pool, job_id))
    row = await pool.fetchrow("SELECT * FROM sync_queue WHERE id = $1", job_id)
    assert (row["status"], row["error_kind"], row["attempts"]) == ("failed", kind, 1)


async def test_a_job_whose_lease_is_taken_is_cancelled_and_records_nothing(
    pool: asyncpg.Pool,
) -> None:
    started = asyncio.Event()
    cancelled = asyncio.Event()

    async def handler(job: Job, ctx: JobContext) -> JobResult:
        started.set()
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            cancelled.set()
            raise
        return JobResult(Outcome.COMPLETED)

    job_id = await _one(pool)
    worker = Worker(pool, handler, FAST)
    task = asyncio.create_task(worker.run())
    try:
        await asyncio.wait_for(started.wait(), 10)
        thief = uuid.uuid4()
        await pool.execute("UPDATE sync_queue SET lease_token = $1, lease_owner = 'other'",
                           thief)
        await asyncio.wait_for(cancelled.wait(), 10)
    finally:
        worker.stop()
        await asyncio.wait_for(task, 30)
    row = await pool.fetchrow("SELECT * FROM sync_queue WHERE id = $1", job_id)
    assert (row["status"], row["lease_token"], row["lease_owner"]) == (
        "processing", thief, "other")


async def test_shutdown_lets_running_jobs_finish_within_the_grace_period(
    pool: asyncpg.Pool,
) -> None:
    started = asyncio.Event()

    async def handler(job: Job, ctx: JobContext) -> JobResult:
        started.set()
        await asyncio.sleep(0.3)
        return JobResult(Outcome.COMPLETED)

    job_id = await _one(pool)
    worker = Worker(pool, handler, FAST)
    task = asyncio.create_task(worker.run())
    await asyncio.wait_for(started.wait(), 10)
    worker.stop()
    await asyncio.wait_for(task, 30)
    assert await pool.fetchval("SELECT status FROM sync_queue WHERE id = $1", job_id) == \
        "completed"


async def test_shutdown_hands_back_jobs_that_outlast_the_grace_period(
    pool: asyncpg.Pool,
) -> None:
    started = asyncio.Event()
    seen_cancel: list[bool] = []

    async def handler(job: Job, ctx: JobContext) -> JobResult:
        started.set()
        try:
            await asyncio.sleep(60)
        finally:
            seen_cancel.append(ctx.cancelled)
        return JobResult(Outcome.COMPLETED)

    job_id = await _one(pool)
    worker = Worker(pool, handler, dataclasses.replace(FAST, grace_seconds=0.2))
    task = asyncio.create_task(worker.run())
    await asyncio.wait_for(started.wait(), 10)
    worker.stop()
    await asyncio.wait_for(task, 30)
    assert seen_cancel == [True]
    row = await pool.fetchrow("SELECT * FROM sync_queue WHERE id = $1", job_id)
    assert (row["status"], row["attempts"], row["lease_token"]) == ("pending", 0, None)


async def test_heartbeats_keep_a_long_job_from_being_reclaimed(pool: asyncpg.Pool) -> None:
    async def handler(job: Job, ctx: JobContext) -> JobResult:
        await asyncio.sleep(2.5)  # well past the one-second lease
        return JobResult(Outcome.COMPLETED)

    job_id = await _one(pool)
    config = dataclasses.replace(FAST, lease_seconds=1.0, heartbeat_seconds=0.2,
                                 maintenance_seconds=0.1)
    # A second worker keeps reclaiming expired leases all along.
    watcher = Worker(pool, handler, config, owner="watcher")
    watcher_task = asyncio.create_task(watcher.run())
    try:
        await _run_until(Worker(pool, handler, config, owner="runner"), _status(pool, job_id))
    finally:
        watcher.stop()
        await asyncio.wait_for(watcher_task, 30)
    row = await pool.fetchrow("SELECT * FROM sync_queue WHERE id = $1", job_id)
    assert (row["status"], row["attempts"], row["error_kind"]) == ("completed", 1, None)
