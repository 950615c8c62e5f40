"""Reading the platform's tables: chunks, change timestamps, deletes, money."""

from __future__ import annotations

import asyncpg

from daemon.provider import Entity
from daemon.source import SourceReader
from daemon.testing.platform import change_rows, create_platform_schema, delete_rows, seed_venue


async def test_reader_streams_chunks_and_filters_by_change_time(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as conn:
        await create_platform_schema(conn)
        sample = await seed_venue(conn, customers=25, events=3, orders=12)
        await seed_venue(conn, name="Other Hall", customers=5, events=1, orders=2)
    reader = SourceReader(pool)
    venue = await reader.venue(str(sample.venue_id))
    chunks = [c async for c in reader.read(Entity.CUSTOMER, venue, chunk_size=10)]
    assert [len(c) for c in chunks] == [10, 10, 5]
    assert await reader.count(Entity.CUSTOMER, venue) == 25
    clock = await reader.now()
    async with pool.acquire() as conn:
        changed = await change_rows(conn, sample.venue_id, "customer", 2)
        gone = await delete_rows(conn, sample.venue_id, "customer", 1)
    fresh = [r async for c in reader.read(Entity.CUSTOMER, venue, since=clock) for r in c]
    assert {r.local_id for r in fresh} == {*changed, *gone}
    assert [r.deleted for r in fresh if r.local_id in gone] == [True]
    # Ids asked for explicitly come back whatever their timestamp.
    first = chunks[0][0].local_id
    again = [r async for c in reader.read(Entity.CUSTOMER, venue, since=clock,
                                           include=[first]) for r in c]
    assert first in {r.local_id for r in again}


async def test_transactions_carry_order_customer_event_and_money(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as conn:
        await create_platform_schema(conn)
        sample = await seed_venue(conn, customers=4, events=2, orders=6)
    reader = SourceReader(pool)
    venue = await reader.venue(str(sample.venue_id))
    records = [r async for c in reader.read(Entity.TRANSACTION, venue) for r in c]
    assert len(records) == 6
    for r in records:
        order = r.data["order"]
        assert isinstance(order["amount"], int)
        assert order["currency"] == "USD"
        assert order["quantity"] >= 1
        assert r.data["customer"]["email"].endswith("@example.com")
        assert r.data["event"]["name"]
        assert r.data["venue"]["name"] == "The Laugh Factory"
    products = [r async for c in reader.read(Entity.PRODUCT, venue) for r in c]
    assert all(isinstance(p.data["event"]["price"], int) for p in products)
