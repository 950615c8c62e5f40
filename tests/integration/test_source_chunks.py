"""The source is read in short transactions: nothing is held between two chunks."""

from __future__ import annotations

import asyncpg

from daemon.provider import Entity
from daemon.source import SourceReader
from daemon.testing.platform import create_platform_schema, seed_venue


async def _open_transactions(admin: asyncpg.Connection) -> int:
    value: int = await admin.fetchval(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
        "AND pid <> pg_backend_pid() AND (xact_start IS NOT NULL OR backend_xmin IS NOT NULL)")
    return value


async def test_no_snapshot_or_connection_is_held_between_chunks(pool: asyncpg.Pool,
                                                                db_url: str) -> None:
    async with pool.acquire() as conn:
        await create_platform_schema(conn)
        sample = await seed_venue(conn, customers=25, events=3, orders=30)
    reader = SourceReader(pool)
    venue = await reader.venue(str(sample.venue_id))
    admin = await asyncpg.connect(db_url)
    try:
        for entity, total in ((Entity.CUSTOMER, 25), (Entity.TRANSACTION, 30)):
            seen: list[str] = []
            async for chunk in reader.read(entity, venue, chunk_size=7):
                # The caller may take hours over a chunk (a rate-limited push): meanwhile
                # no transaction is open and every pooled connection is free.
                assert await _open_transactions(admin) == 0
                assert pool.get_idle_size() == pool.get_size()
                seen.extend(r.local_id for r in chunk)
            assert len(seen) == total
            assert len(set(seen)) == total
    finally:
        await admin.close()


async def test_rows_changed_during_a_read_are_read_by_the_next_one(pool: asyncpg.Pool) -> None:
    """A row changed after its chunk was read carries a change time later than the clock
    read before the read, so a read since that clock finds it."""
    async with pool.acquire() as conn:
        await create_platform_schema(conn)
        sample = await seed_venue(conn, customers=20, events=1, orders=0)
    reader = SourceReader(pool)
    venue = await reader.venue(str(sample.venue_id))
    clock = await reader.now()
    first: list[str] = []
    changed = None
    async for chunk in reader.read(Entity.CUSTOMER, venue, chunk_size=5):
        first.extend(r.local_id for r in chunk)
        if changed is None:
            changed = chunk[0].local_id
            await pool.execute("UPDATE customers SET first_name = 'Changed', "
                               "updated_at = now() WHERE id = $1::uuid", changed)
    assert len(first) == len(set(first)) == 20
    again = [r async for c in reader.read(Entity.CUSTOMER, venue, since=clock) for r in c]
    assert [r.local_id for r in again] == [changed]
    assert again[0].data["customer"]["first_name"] == "Changed"
