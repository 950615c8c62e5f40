"""The inventory source: each event's tickets left, and register sales written back."""

from __future__ import annotations

import uuid

import asyncpg
import pytest

from daemon.provider import Entity
from daemon.source import SourceReader, SourceSettings
from daemon.source.pos import UnknownEvent, pos_sold, record_pos_sales
from daemon.testing.platform import create_platform_schema, seed_venue

SETTINGS = SourceSettings()


async def _stock(reader: SourceReader, venue_id: uuid.UUID) -> dict[str, dict[str, int]]:
    venue = await reader.venue(str(venue_id))
    return {r.local_id: r.data["event"] async for c in reader.read(Entity.INVENTORY, venue)
            for r in c}


async def test_remaining_is_capacity_less_live_tickets_and_register_sales(
        pool: asyncpg.Pool) -> None:
    async with pool.acquire() as conn:
        await create_platform_schema(conn)
        sample = await seed_venue(conn, customers=10, events=3, orders=40)
        await seed_venue(conn, name="Other Hall", customers=2, events=1, orders=3)
        await conn.execute("UPDATE events SET capacity = NULL WHERE id = (SELECT id FROM "
                           "events WHERE venue_id = $1 ORDER BY id LIMIT 1)", sample.venue_id)
        expected = {r["id"]: r for r in await conn.fetch(
            "SELECT e.id::text AS id, e.capacity, count(t.id) FILTER (WHERE o.status = 'paid')"
            " AS sold FROM events e LEFT JOIN orders o ON o.event_id = e.id "
            "LEFT JOIN tickets t ON t.order_id = o.id WHERE e.venue_id = $1 "
            "AND e.capacity IS NOT NULL GROUP BY e.id", sample.venue_id)}
    reader = SourceReader(pool)
    stock = await _stock(reader, sample.venue_id)
    assert set(stock) == set(expected)  # the event with no capacity has no count
    for event_id, row in expected.items():
        assert stock[event_id]["sold"] == row["sold"] > 0
        assert stock[event_id]["remaining"] == row["capacity"] - row["sold"]
    event_id = next(iter(expected))
    clock = await reader.now()
    async with pool.acquire() as conn:
        assert await record_pos_sales(conn, str(sample.venue_id), event_id, 3,
                                      provider="square", key="obs-1", settings=SETTINGS)
        assert not await record_pos_sales(conn, str(sample.venue_id), event_id, 3,
                                          provider="square", key="obs-1", settings=SETTINGS)
        assert await record_pos_sales(conn, str(sample.venue_id), event_id, -1,
                                      provider="square", key="obs-2", settings=SETTINGS)
        assert await pos_sold(conn, str(sample.venue_id), event_id, settings=SETTINGS) == 2
    venue = await reader.venue(str(sample.venue_id))
    changed = [r async for c in reader.read(Entity.INVENTORY, venue, since=clock) for r in c]
    assert [r.local_id for r in changed] == [event_id]
    event = changed[0].data["event"]
    assert (event["pos_sold"], event["remaining"]) == (
        2, expected[event_id]["capacity"] - expected[event_id]["sold"] - 2)


async def test_a_refund_changes_the_count_and_gives_the_seats_back(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as conn:
        await create_platform_schema(conn)
        sample = await seed_venue(conn, customers=3, events=1, orders=4)
    reader = SourceReader(pool)
    before = await _stock(reader, sample.venue_id)
    clock = await reader.now()
    async with pool.acquire() as conn:
        tickets = await conn.fetchval(
            "WITH o AS (UPDATE orders SET status = 'refunded', updated_at = now() WHERE id = "
            "(SELECT id FROM orders WHERE venue_id = $1 AND status = 'paid' ORDER BY id "
            "LIMIT 1) RETURNING id) SELECT count(*) FROM tickets, o WHERE order_id = o.id",
            sample.venue_id)
    venue = await reader.venue(str(sample.venue_id))
    [record] = [r async for c in reader.read(Entity.INVENTORY, venue, since=clock) for r in c]
    assert record.data["event"]["remaining"] == before[record.local_id]["remaining"] + tickets


async def test_register_sales_of_another_venue_s_event_are_refused(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as conn:
        await create_platform_schema(conn)
        mine = await seed_venue(conn, customers=1, events=1, orders=0)
        other = await seed_venue(conn, name="Other Hall", customers=1, events=1, orders=0)
        theirs = await conn.fetchval("SELECT id::text FROM events WHERE venue_id = $1",
                                     other.venue_id)
        for event_id in (theirs, "not-a-uuid", str(uuid.uuid4())):
            with pytest.raises(UnknownEvent):
                await record_pos_sales(conn, str(mine.venue_id), event_id, 1,
                                       provider="square", key=f"k-{event_id}",
                                       settings=SETTINGS)
        assert await conn.fetchval("SELECT count(*) FROM pos_sales") == 0
