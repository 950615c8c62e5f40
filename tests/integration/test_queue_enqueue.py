"""Enqueue: deduplication by idempotency key, coalescing of pending syncs, bad input."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from daemon.queue import NewJob, enqueue, enqueue_many

VENUE = uuid.UUID("00000000-0000-0000-0000-000000000001")


async def test_enqueue_returns_id_and_stores_the_job(conn: asyncpg.Connection) -> None:
    job_id = await enqueue(conn, venue_id=VENUE, provider="square", entity_type="products",
                           lane="HIGH", payload={"a": 1}, correlation_id="c-1")
    assert job_id is not None
    row = await conn.fetchrow("SELECT * FROM sync_queue WHERE id = $1", job_id)
    assert row["status"] == "pending"
    assert row["lane"] == "HIGH"
    assert row["payload"] == {"a": 1}
    assert row["correlation_id"] == "c-1"
    assert row["attempts"] == 0


async def test_same_idempotency_key_is_enqueued_once(conn: asyncpg.Connection) -> None:
    first = await enqueue(conn, venue_id=VENUE, provider="square", entity_type="customers",
                          operation="create", entity_id="7", idempotency_key="k1")
    second = await enqueue(conn, venue_id=VENUE, provider="square", entity_type="customers",
                           operation="create", entity_id="7", idempotency_key="k1")
    assert first is not None
    assert second is None
    assert await conn.fetchval("SELECT count(*) FROM sync_queue") == 1


async def test_pending_syncs_of_one_entity_coalesce_into_the_higher_lane(
    conn: asyncpg.Connection,
) -> None:
    later = datetime.now(UTC) + timedelta(hours=1)
    first = await enqueue(conn, venue_id=VENUE, provider="square", entity_type="products",
                          lane="LOW", run_at=later)
    second = await enqueue(conn, venue_id=VENUE, provider="square", entity_type="products",
                           lane="CRITICAL")
    other_entity = await enqueue(conn, venue_id=VENUE, provider="square",
                                 entity_type="customers")
    assert first is not None
    assert second is None
    assert other_entity is not None
    row = await conn.fetchrow("SELECT lane, run_at FROM sync_queue WHERE id = $1", first)
    assert row["lane"] == "CRITICAL"
    assert row["run_at"] < later


async def test_jobs_carrying_changes_are_not_coalesced(conn: asyncpg.Connection) -> None:
    ids = [
        await enqueue(conn, venue_id=VENUE, provider="square", entity_type="customers",
                      operation="update", entity_id="7", payload={"n": n})
        for n in range(2)
    ]
    assert all(i is not None for i in ids)


async def test_enqueue_many_skips_duplicates(conn: asyncpg.Connection) -> None:
    jobs = [NewJob(venue_id=uuid.uuid4(), provider="stripe", entity_type="products",
                   payload={"i": i}) for i in range(50)]
    ids = await enqueue_many(conn, jobs)
    assert len(ids) == 50
    again = await enqueue_many(conn, jobs[:10])
    assert again == []  # coalesced into the pending ones
    assert await conn.fetchval("SELECT count(*) FROM sync_queue") == 50


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"lane": "URGENT"}, "unknown lane"),
        ({"operation": "explode"}, "unknown operation"),
        ({"max_attempts": 0}, "max_attempts"),
        ({"run_at": datetime(2030, 1, 1)}, "timezone-aware"),
    ],
)
async def test_bad_input_is_refused_and_nothing_written(
    conn: asyncpg.Connection, kwargs: dict[str, object], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        await enqueue(conn, venue_id=VENUE, provider="square", entity_type="products",
                      **kwargs)  # type: ignore[arg-type]
    bad = NewJob(venue_id=VENUE, provider="square", entity_type="x", lane="NOPE")
    with pytest.raises(ValueError, match="unknown lane"):
        await enqueue_many(conn, [NewJob(venue_id=VENUE, provider="s", entity_type="y"), bad])
    assert await conn.fetchval("SELECT count(*) FROM sync_queue") == 0
