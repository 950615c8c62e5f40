"""``syncd sync``'s hold on an integration's slot ends fenced by its lease token."""

from __future__ import annotations

import uuid

import asyncpg

from daemon.worker.hold import hold_integration

VENUE = uuid.UUID("3df588d2-6980-5aea-82fe-9b427569ca7f")


async def _hold_then(pool: asyncpg.Pool, *, taken_over: bool, fail: bool) -> asyncpg.Record:
    new_token = uuid.uuid4()
    job_id = None
    try:
        async with hold_integration(pool, VENUE, "stripe", owner="test", lease_seconds=30,
                                    heartbeat_seconds=10) as hold:
            job_id = hold.job.id
            if taken_over:  # another worker reclaimed the expired lease meanwhile
                await pool.execute("UPDATE sync_queue SET lease_token = $2, "
                                   "lease_owner = 'other' WHERE id = $1", job_id, new_token)
            if fail:
                raise RuntimeError("the run failed")
    except RuntimeError:
        pass
    row = await pool.fetchrow("SELECT status, lease_owner FROM sync_queue WHERE id = $1",
                              job_id)
    assert row is not None
    return row


async def test_a_hold_completes_its_own_job(pool: asyncpg.Pool) -> None:
    row = await _hold_then(pool, taken_over=False, fail=False)
    assert row["status"] == "completed"


async def test_a_hold_whose_lease_was_taken_over_completes_nothing(pool: asyncpg.Pool) -> None:
    row = await _hold_then(pool, taken_over=True, fail=False)
    assert (row["status"], row["lease_owner"]) == ("processing", "other")


async def test_a_hold_whose_lease_was_taken_over_fails_nothing(pool: asyncpg.Pool) -> None:
    row = await _hold_then(pool, taken_over=True, fail=True)
    assert (row["status"], row["lease_owner"]) == ("processing", "other")
