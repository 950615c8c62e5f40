"""Claiming: lane weights under load, one running job per integration, leases and fencing."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter

import asyncpg
import pytest

from daemon.queue import LANES, Job, LeaseLost, NewJob, enqueue, enqueue_many
from daemon.queue.claim import claim_jobs
from daemon.queue.lanes import LaneScheduler
from daemon.queue.maintenance import reclaim_expired
from daemon.sql import queries
from daemon.worker.context import RunContext

Q = queries("queue.sql")


async def _complete(executor: asyncpg.Pool, job: Job) -> None:
    """Record ``job`` completed as the worker does: through the claim, claiming nothing."""
    await claim_jobs(executor, owner="t", limit=0, lanes=LaneScheduler(),
                     lease_seconds=60, completed=[(job.id, job.lease_token)])


async def _fill(pool: asyncpg.Pool, per_lane: int, lanes: tuple[str, ...] = LANES) -> None:
    # Every job its own integration, so only the lane weights decide the order.
    await enqueue_many(pool, [
        NewJob(venue_id=uuid.uuid4(), provider="square", entity_type="products", lane=lane)
        for lane in lanes for _ in range(per_lane)
    ])


async def _claim_counts(pool: asyncpg.Pool, rounds: int, batch: int,
                        lanes: LaneScheduler | None = None) -> Counter[str]:
    lanes = lanes or LaneScheduler((8, 4, 2, 1))
    counts: Counter[str] = Counter()
    for _ in range(rounds):
        for job in await claim_jobs(pool, owner="t", limit=batch, lanes=lanes, lease_seconds=60):
            counts[job.lane] += 1
    return counts


@pytest.mark.parametrize("batch", [1, 10])
async def test_lanes_get_their_weighted_share_under_load(pool: asyncpg.Pool, batch: int) -> None:
    await _fill(pool, per_lane=300)
    total = 300
    counts = await _claim_counts(pool, rounds=total // batch, batch=batch)
    assert sum(counts.values()) == total
    expected = {"CRITICAL": 160, "HIGH": 80, "NORMAL": 40, "LOW": 20}
    for lane, share in expected.items():
        assert abs(counts[lane] - share) <= batch + 1, counts
    assert counts["LOW"] > 0  # not starved


async def test_an_idle_lane_leaves_its_share_to_the_others(pool: asyncpg.Pool) -> None:
    await _fill(pool, per_lane=200, lanes=("NORMAL", "LOW"))
    counts = await _claim_counts(pool, rounds=30, batch=5)
    assert sum(counts.values()) == 150
    assert abs(counts["NORMAL"] - 100) <= 6, counts
    assert abs(counts["LOW"] - 50) <= 6, counts


async def test_a_lane_back_from_idle_gets_its_share_not_a_burst(pool: asyncpg.Pool) -> None:
    lanes = LaneScheduler((8, 4, 2, 1))
    await _fill(pool, per_lane=300, lanes=("LOW",))
    await _claim_counts(pool, rounds=20, batch=5, lanes=lanes)  # LOW alone, then idle...
    await _fill(pool, per_lane=300, lanes=("CRITICAL", "LOW"))
    counts = await _claim_counts(pool, rounds=18, batch=5, lanes=lanes)
    # From now on 8:1, not LOW catching up on the time CRITICAL was idle... nor the reverse.
    assert abs(counts["CRITICAL"] - 80) <= 6, counts
    assert abs(counts["LOW"] - 10) <= 6, counts


async def test_one_running_job_per_integration(pool: asyncpg.Pool) -> None:
    venue = uuid.uuid4()
    for entity in ("products", "customers", "transactions"):
        await enqueue(pool, venue_id=venue, provider="square", entity_type=entity)
    other = await enqueue(pool, venue_id=venue, provider="stripe", entity_type="products")
    lanes = LaneScheduler()
    first = await claim_jobs(pool, owner="a", limit=10, lanes=lanes, lease_seconds=60)
    assert len(first) == 2
    assert {j.provider for j in first} == {"square", "stripe"}
    assert other in {j.id for j in first}
    assert await claim_jobs(pool, owner="b", limit=10, lanes=lanes, lease_seconds=60) == []
    square = next(j for j in first if j.provider == "square")
    await _complete(pool, square)
    nxt = await claim_jobs(pool, owner="b", limit=10, lanes=lanes, lease_seconds=60)
    assert [j.provider for j in nxt] == ["square"]


async def test_racing_claimers_never_run_two_jobs_of_one_integration(
    db_url: str,
) -> None:
    from daemon.db import open_pool

    pool = await open_pool(db_url, min_size=8, max_size=8)
    try:
        venues = [uuid.uuid4() for _ in range(5)]
        await enqueue_many(pool, [
            NewJob(venue_id=v, provider="square", entity_type=f"e{i}")
            for v in venues for i in range(20)
        ])
        running: dict[uuid.UUID, int] = {}
        finished = 0

        async def claimer(name: str) -> None:
            nonlocal finished
            lanes = LaneScheduler()
            while finished < 100:
                jobs = await claim_jobs(pool, owner=name, limit=3, lanes=lanes,
                                        lease_seconds=60)
                for job in jobs:
                    assert job.venue_id not in running, "two jobs of one integration"
                    running[job.venue_id] = job.id
                await asyncio.sleep(0)
                for job in jobs:
                    del running[job.venue_id]
                    await _complete(pool, job)
                    finished += 1
                if not jobs:
                    await asyncio.sleep(0.001)

        await asyncio.wait_for(asyncio.gather(*(claimer(f"w{i}") for i in range(6))), 60)
        assert await pool.fetchval(
            "SELECT count(*) FROM sync_queue WHERE status = 'completed'") == 100
    finally:
        await pool.close()


async def test_a_claimer_that_loses_the_race_for_the_head_still_fills_its_batch(
    pool: asyncpg.Pool,
) -> None:
    await _fill(pool, per_lane=30, lanes=("NORMAL",))
    async with pool.acquire() as first, first.transaction():
        # The first claim holds its rows (uncommitted) while a second claimer runs: both
        # snapshots show the same head of the queue.
        held = await claim_jobs(first, owner="a", limit=10, lanes=LaneScheduler(),
                                lease_seconds=60)
        second = await claim_jobs(pool, owner="b", limit=10, lanes=LaneScheduler(),
                                  lease_seconds=60)
    assert len(held) == 10
    assert len(second) == 10
    assert not {j.id for j in held} & {j.id for j in second}
    # The second took the next jobs in due order, not some later ones.
    ids = [r["id"] for r in await pool.fetch("SELECT id FROM sync_queue ORDER BY run_at, id")]
    assert sorted(j.id for j in held + second) == ids[:20]


async def test_a_fenced_worker_cannot_commit(pool: asyncpg.Pool) -> None:
    await pool.execute("CREATE TABLE results (job_id bigint, owner text)")
    job_id = await enqueue(pool, venue_id=uuid.uuid4(), provider="square", entity_type="x")
    lanes = LaneScheduler()
    [old] = await claim_jobs(pool, owner="a", limit=1, lanes=lanes, lease_seconds=60)
    # Worker a is cut off: its lease runs out and worker b takes the job over.
    await pool.execute("UPDATE sync_queue SET lease_expires_at = now() - interval '1 second'")
    reclaimed = await reclaim_expired(pool)
    assert reclaimed.retried == (job_id,)
    [new] = await claim_jobs(pool, owner="b", limit=1, lanes=lanes, lease_seconds=60)
    assert new.id == old.id
    assert new.lease_token != old.lease_token

    stale = RunContext(pool, old, 60)

    async def commit_as_a() -> None:
        async with pool.acquire() as conn, conn.transaction():
            await conn.execute("INSERT INTO results VALUES ($1, 'a')", old.id)
            await stale.assert_lease(conn)

    with pytest.raises(LeaseLost):
        await commit_as_a()
    assert stale.cancelled
    await _complete(pool, old)
    row = await pool.fetchrow("SELECT status, lease_owner FROM sync_queue WHERE id = $1", old.id)
    assert tuple(row) == ("processing", "b")
    assert await pool.fetch(Q["heartbeat"], [old.id], [old.lease_token], 60.0) == []

    current = RunContext(pool, new, 60)
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("INSERT INTO results VALUES ($1, 'b')", new.id)
        await current.assert_lease(conn)
    await _complete(pool, new)
    assert await pool.fetch("SELECT owner FROM results") == [("b",)]
    row = await pool.fetchrow("SELECT status, attempts, error_kind FROM sync_queue")
    assert tuple(row) == ("completed", 2, "lease")


async def test_expired_jobs_are_not_claimed(pool: asyncpg.Pool) -> None:
    from datetime import UTC, datetime, timedelta

    from daemon.queue.maintenance import expire_pending

    past = datetime.now(UTC) - timedelta(minutes=5)
    await enqueue(pool, venue_id=uuid.uuid4(), provider="square", entity_type="x",
                  run_at=past, expires_at=past + timedelta(minutes=1))
    assert await claim_jobs(pool, owner="a", limit=5, lanes=LaneScheduler(),
                            lease_seconds=60) == []
    assert await expire_pending(pool) == 1
    row = await pool.fetchrow("SELECT status, error_kind FROM sync_queue")
    assert tuple(row) == ("failed", "expired")


async def test_a_retry_absorbs_a_twin_enqueued_while_it_ran(pool: asyncpg.Pool) -> None:
    venue = uuid.uuid4()
    first = await enqueue(pool, venue_id=venue, provider="square", entity_type="products")
    [job] = await claim_jobs(pool, owner="a", limit=1, lanes=LaneScheduler(), lease_seconds=60)
    twin = await enqueue(pool, venue_id=venue, provider="square", entity_type="products",
                         lane="HIGH")
    assert twin is not None
    rows = await pool.fetch(Q["retry_many"], [job.id], [job.lease_token], ["boom"], [30.0])
    assert [tuple(r) for r in rows] == [(first, "pending")]
    remaining = await pool.fetch("SELECT id, lane, attempts, last_error FROM sync_queue")
    assert [tuple(r) for r in remaining] == [(first, "HIGH", 1, "boom")]


async def test_complete_in_the_handlers_transaction_commits_or_rolls_back_with_it(
    pool: asyncpg.Pool,
) -> None:
    await pool.execute("CREATE TABLE results (job_id bigint)")
    await enqueue(pool, venue_id=uuid.uuid4(), provider="square", entity_type="x")
    [job] = await claim_jobs(pool, owner="a", limit=1, lanes=LaneScheduler(), lease_seconds=60)
    ctx = RunContext(pool, job, 60)

    class Boom(Exception):
        pass

    async def complete_then_fail() -> None:
        async with pool.acquire() as conn, conn.transaction():
            await conn.execute("INSERT INTO results VALUES ($1)", job.id)
            await ctx.complete(conn)
            raise Boom

    with pytest.raises(Boom):
        await complete_then_fail()
    # Rolled back: still running under the same lease, nothing written.
    assert await pool.fetchval("SELECT status FROM sync_queue") == "processing"
    assert await pool.fetchval("SELECT count(*) FROM results") == 0

    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("INSERT INTO results VALUES ($1)", job.id)
        await ctx.complete(conn)
    row = await pool.fetchrow("SELECT status, lease_token FROM sync_queue")
    assert tuple(row) == ("completed", None)
    # The worker's own recording afterwards finds nothing left to do.
    await _complete(pool, job)
    row = await pool.fetchrow("SELECT status, completed_at FROM sync_queue")
    assert row["status"] == "completed"


async def test_a_fenced_worker_cannot_complete(pool: asyncpg.Pool) -> None:
    await enqueue(pool, venue_id=uuid.uuid4(), provider="square", entity_type="x")
    lanes = LaneScheduler()
    [old] = await claim_jobs(pool, owner="a", limit=1, lanes=lanes, lease_seconds=60)
    await pool.execute("UPDATE sync_queue SET lease_expires_at = now() - interval '1 second'")
    await reclaim_expired(pool)
    [new] = await claim_jobs(pool, owner="b", limit=1, lanes=lanes, lease_seconds=60)
    stale = RunContext(pool, old, 60)
    async def complete_as_a() -> None:
        async with pool.acquire() as conn, conn.transaction():
            await stale.complete(conn)

    with pytest.raises(LeaseLost):
        await complete_as_a()
    assert stale.cancelled
    row = await pool.fetchrow("SELECT status, lease_owner FROM sync_queue WHERE id = $1", new.id)
    assert tuple(row) == ("processing", "b")


async def test_a_head_crowded_by_one_integration_does_not_shrink_the_batch(
    pool: asyncpg.Pool,
) -> None:
    busy = uuid.uuid4()
    await enqueue_many(pool, [
        NewJob(venue_id=busy, provider="square", entity_type=f"e{i}") for i in range(30)
    ])
    await _fill(pool, per_lane=10, lanes=("NORMAL",))
    jobs = await claim_jobs(pool, owner="a", limit=5, lanes=LaneScheduler(), lease_seconds=60)
    assert len(jobs) == 5
    assert sum(1 for j in jobs if j.venue_id == busy) == 1


async def test_a_long_handler_transaction_does_not_hold_up_other_leases(
    pool: asyncpg.Pool,
) -> None:
    await _fill(pool, per_lane=2, lanes=("NORMAL",))
    jobs = await claim_jobs(pool, owner="a", limit=2, lanes=LaneScheduler(), lease_seconds=60)
    busy, other = jobs
    before = await pool.fetchval("SELECT lease_expires_at FROM sync_queue WHERE id = $1",
                                 other.id)
    async with pool.acquire() as conn, conn.transaction():
        # The busy job's handler is inside its own transaction, holding its row.
        await RunContext(pool, busy, 60).assert_lease(conn)
        rows = await asyncio.wait_for(pool.fetch(
            Q["heartbeat"], [busy.id, other.id], [busy.lease_token, other.lease_token], 120.0),
            timeout=30)
    assert sorted(r["id"] for r in rows) == sorted([busy.id, other.id])  # both still held
    after = await pool.fetchval("SELECT lease_expires_at FROM sync_queue WHERE id = $1",
                                other.id)
    assert after > before  # the other job's lease was renewed meanwhile


async def test_a_retried_job_waits_out_its_delay(pool: asyncpg.Pool) -> None:
    await enqueue(pool, venue_id=uuid.uuid4(), provider="square", entity_type="x")
    [job] = await claim_jobs(pool, owner="a", limit=1, lanes=LaneScheduler(), lease_seconds=60)
    await pool.fetch(Q["retry_many"], [job.id], [job.lease_token], ["busy"], [600.0])
    assert await claim_jobs(pool, owner="b", limit=1, lanes=LaneScheduler(),
                            lease_seconds=60) == []
    wait = await pool.fetchval("SELECT extract(epoch FROM run_at - now()) FROM sync_queue")
    assert 590 < wait <= 600


async def test_a_job_is_not_expired_before_its_expiry(pool: asyncpg.Pool) -> None:
    from datetime import UTC, datetime, timedelta

    from daemon.queue.maintenance import expire_pending

    soon = datetime.now(UTC) + timedelta(minutes=20)
    await enqueue(pool, venue_id=uuid.uuid4(), provider="square", entity_type="x",
                  run_at=soon, expires_at=soon + timedelta(minutes=10))
    assert await expire_pending(pool) == 0
    assert await pool.fetchval("SELECT status FROM sync_queue") == "pending"


async def test_a_replayed_dead_letter_gets_a_fresh_attempt_budget(pool: asyncpg.Pool) -> None:
    from daemon.queue.admin import dlq_replay

    job_id = await enqueue(pool, venue_id=uuid.uuid4(), provider="square", entity_type="x",
                           max_attempts=1)
    [job] = await claim_jobs(pool, owner="a", limit=1, lanes=LaneScheduler(), lease_seconds=60)
    rows = await pool.fetch(Q["retry_many"], [job.id], [job.lease_token], ["boom"], [0.0])
    assert [tuple(r) for r in rows] == [(job_id, "dead_letter")]
    async with pool.acquire() as conn:
        assert await dlq_replay(conn, ids=[job_id]) == [job_id]
    row = await pool.fetchrow("SELECT status, attempts, last_error FROM sync_queue")
    assert tuple(row) == ("pending", 0, "boom")
    [again] = await claim_jobs(pool, owner="b", limit=1, lanes=LaneScheduler(),
                               lease_seconds=60)
    assert (again.id, again.attempts) == (job_id, 1)
