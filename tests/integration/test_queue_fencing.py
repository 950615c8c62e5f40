"""Lease fencing on the statements the worker runs to finish jobs.

The worker records completions through the claim statement (the ids and lease tokens of the
jobs it finished), and failures and retries through ``fail_many`` and ``retry_many``. A
worker whose lease was taken over must change nothing with any of them: the job is its new
owner's, still running, and marking it done, failed or pending would free the integration
for a second run alongside it.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable

import asyncpg
import pytest

from daemon.queue import Job, JobContext, JobResult, Outcome, enqueue
from daemon.queue.claim import claim_jobs
from daemon.queue.lanes import LaneScheduler
from daemon.queue.maintenance import reclaim_expired
from daemon.sql import queries
from daemon.worker import Worker, WorkerConfig

Q = queries("queue.sql")
#: last_error of a job reclaimed from worker a (and then claimed by b).
TAKEN = "lease expired: worker a stopped renewing it"


async def _take_over(pool: asyncpg.Pool, job_id: int) -> Job:
    """Worker a is cut off: its lease on ``job_id`` runs out and worker b claims the job."""
    await pool.execute("UPDATE sync_queue SET lease_expires_at = now() - interval '1 second' "
                       "WHERE id = $1", job_id)
    reclaimed = await reclaim_expired(pool)
    assert job_id in reclaimed.retried
    claimed = await claim_jobs(pool, owner="b", limit=10, lanes=LaneScheduler(),
                               lease_seconds=60)
    [new] = [j for j in claimed if j.id == job_id]
    return new


async def _state(pool: asyncpg.Pool, job_id: int) -> tuple[object, ...]:
    row = await pool.fetchrow(
        "SELECT status, lease_owner, lease_token, last_error FROM sync_queue WHERE id = $1",
        job_id)
    return tuple(row)


async def _two_jobs(pool: asyncpg.Pool) -> tuple[Job, Job, Job]:
    """Jobs x and y claimed by worker a; x then taken over by worker b.

    Returns (a's stale x, b's x, a's y).
    """
    x = await enqueue(pool, venue_id=uuid.uuid4(), provider="square", entity_type="products")
    y = await enqueue(pool, venue_id=uuid.uuid4(), provider="square", entity_type="products")
    jobs = await claim_jobs(pool, owner="a", limit=2, lanes=LaneScheduler(), lease_seconds=60)
    by_id = {j.id: j for j in jobs}
    assert set(by_id) == {x, y}
    new_x = await _take_over(pool, x)
    assert new_x.lease_token != by_id[x].lease_token
    return by_id[x], new_x, by_id[y]


async def test_completing_through_the_claim_is_fenced(pool: asyncpg.Pool) -> None:
    stale_x, new_x, y = await _two_jobs(pool)
    await claim_jobs(pool, owner="a", limit=5, lanes=LaneScheduler(), lease_seconds=60,
                     completed=[(stale_x.id, stale_x.lease_token), (y.id, y.lease_token)])
    assert await _state(pool, stale_x.id) == ("processing", "b", new_x.lease_token, TAKEN)
    assert (await _state(pool, y.id))[:3] == ("completed", None, None)
    # Its new owner completes it the same way.
    await claim_jobs(pool, owner="b", limit=5, lanes=LaneScheduler(), lease_seconds=60,
                     completed=[(new_x.id, new_x.lease_token)])
    assert (await _state(pool, new_x.id))[:3] == ("completed", None, None)


async def test_a_completion_recorded_on_a_claim_race_is_fenced_too(pool: asyncpg.Pool) -> None:
    # The stale token alone, with nothing to claim: the statement's completion part.
    stale_x, new_x, _ = await _two_jobs(pool)
    assert await claim_jobs(pool, owner="a", limit=0, lanes=LaneScheduler(), lease_seconds=60,
                            completed=[(stale_x.id, stale_x.lease_token)]) == []
    assert await _state(pool, stale_x.id) == ("processing", "b", new_x.lease_token, TAKEN)


async def test_failing_is_fenced(pool: asyncpg.Pool) -> None:
    stale_x, new_x, y = await _two_jobs(pool)
    rows = await pool.fetch(Q["fail_many"], [stale_x.id, y.id],
                            [stale_x.lease_token, y.lease_token], ["late", "bad"],
                            ["permanent", "auth"])
    assert [r["id"] for r in rows] == [y.id]
    assert await _state(pool, stale_x.id) == ("processing", "b", new_x.lease_token, TAKEN)
    assert await _state(pool, y.id) == ("failed", None, None, "bad")
    rows = await pool.fetch(Q["fail_many"], [new_x.id], [new_x.lease_token], ["b's"],
                            ["permanent"])
    assert await _state(pool, new_x.id) == ("failed", None, None, "b's")


async def test_failing_needs_each_jobs_own_token(pool: asyncpg.Pool) -> None:
    # y's valid token must not vouch for x: tokens go with their ids.
    stale_x, new_x, y = await _two_jobs(pool)
    await pool.fetch(Q["fail_many"], [stale_x.id, y.id], [y.lease_token, stale_x.lease_token],
                     ["late", "bad"], ["permanent", "permanent"])
    assert await _state(pool, stale_x.id) == ("processing", "b", new_x.lease_token, TAKEN)
    assert (await _state(pool, y.id))[0] == "processing"


async def test_retrying_is_fenced(pool: asyncpg.Pool) -> None:
    stale_x, new_x, y = await _two_jobs(pool)
    rows = await pool.fetch(Q["retry_many"], [stale_x.id, y.id],
                            [stale_x.lease_token, y.lease_token], ["late", "busy"], [30.0, 30.0])
    assert [(r["id"], r["status"]) for r in rows] == [(y.id, "pending")]
    assert await _state(pool, stale_x.id) == ("processing", "b", new_x.lease_token, TAKEN)
    assert await _state(pool, y.id) == ("pending", None, None, "busy")


async def test_retrying_needs_each_jobs_own_token(pool: asyncpg.Pool) -> None:
    stale_x, new_x, y = await _two_jobs(pool)
    await pool.fetch(Q["retry_many"], [stale_x.id, y.id], [y.lease_token, stale_x.lease_token],
                     ["late", "busy"], [30.0, 30.0])
    assert await _state(pool, stale_x.id) == ("processing", "b", new_x.lease_token, TAKEN)
    assert (await _state(pool, y.id))[0] == "processing"


# --- through the worker ------------------------------------------------------------------

# The heartbeat would notice the lost lease and drop the job unrecorded; the fencing in SQL
# is what holds when the attempt ends before the next beat, so the beat is kept away here.
SLOW_BEAT = WorkerConfig(concurrency=2, batch_size=2, lease_seconds=60, heartbeat_seconds=3600,
                         poll_seconds=0.05, retry_base_seconds=600, retry_cap_seconds=600,
                         grace_seconds=5)

_EXPECTED = {
    Outcome.COMPLETED: "completed",
    Outcome.FAILED: "failed",
    Outcome.AUTH: "failed",
    Outcome.RETRY: "pending",
}


@pytest.mark.parametrize("outcome", list(_EXPECTED), ids=lambda o: o.value)
async def test_a_worker_whose_lease_was_taken_over_records_nothing(
    pool: asyncpg.Pool, outcome: Outcome,
) -> None:
    x = await enqueue(pool, venue_id=uuid.uuid4(), provider="square", entity_type="products")
    y = await enqueue(pool, venue_id=uuid.uuid4(), provider="square", entity_type="products")
    started: set[int] = set()
    release = asyncio.Event()

    async def handler(job: Job, ctx: JobContext) -> JobResult:
        started.add(job.id)
        await release.wait()
        return JobResult(outcome, error=f"{outcome.value} by a")

    async def until(check: Callable[[], Awaitable[bool]]) -> None:
        async with asyncio.timeout(30):
            while not await check():
                await asyncio.sleep(0.02)

    worker = Worker(pool, handler, SLOW_BEAT, owner="a", maintenance=False)
    task = asyncio.create_task(worker.run())
    try:
        async def both_started() -> bool:
            return started == {x, y}

        await until(both_started)
        new_x = await _take_over(pool, x)
        release.set()

        async def y_recorded() -> bool:
            return await pool.fetchval(
                "SELECT last_error IS NOT NULL OR status = 'completed' FROM sync_queue "
                "WHERE id = $1", y) is True

        await until(y_recorded)  # worker a has recorded its results
    finally:
        worker.stop()
        await asyncio.wait_for(task, 30)
    assert (await _state(pool, y))[0] == _EXPECTED[outcome]
    assert await _state(pool, x) == ("processing", "b", new_x.lease_token, TAKEN)
