"""Square inventory end to end: the engine, the emulator, real Postgres and the settle step.

Online sales (platform orders), register sales (the emulator's POS), pushes (engine runs,
which pull counts after pushing), webhook deliveries (replayed and out of order) and
settling of the inbound changes interleave in any order. Whatever the order:

- syncd never oversells: after every push Square's count is exactly what is left to sell,
  ``max(0, capacity - online - register)``, register sales not yet known to the platform
  included (a sale at the register between two pushes is never overwritten);
- syncd never takes a count below zero;
- no register sale is lost or counted twice: once everything is settled the platform holds
  every one of them, and online plus register tickets is what was really sold.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import asyncpg
import httpx
from aiohttp import web
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from daemon.credentials import EmulatorTokens, ReferenceCredentialStore
from daemon.db import init_connection
from daemon.inbound.processor import InboundProcessor
from daemon.inventory import Settled, settle_inventory_change
from daemon.plugins import load_plugins
from daemon.provider import EmulatorSettings, Entity, WebhookRequest
from daemon.source import SourceSettings
from daemon.source.pos import pos_sold
from daemon.sql import queries
from daemon.sync import SyncEngine, SyncSettings
from daemon.testing.emulator import EmulatorServer
from daemon.testing.platform import create_platform_schema, seed_venue
from plugins.square.emulator import SquareEmulator

SETTINGS = SourceSettings()
_WEBHOOKS = queries("webhooks.sql")
CAPACITIES = (6, 4)


@dataclass
class Box:
    """A venue with two events sold online and at Square's register, synced by an engine."""

    pool: asyncpg.Pool
    engine: SyncEngine
    emulator: SquareEmulator
    venue: str
    events: list[str]
    variations: dict[str, str] = field(default_factory=dict)
    online: dict[str, int] = field(default_factory=dict)
    register: dict[str, int] = field(default_factory=dict)
    webhooks: list[bytes] = field(default_factory=list)
    delivered: int = 0

    async def sync(self, entity: Entity = Entity.INVENTORY) -> None:
        report = await self.engine.run(self.venue, "square", entity=entity)
        assert report.outcome.value == "ok", report.error
        assert not report.failed, report.errors

    def count(self, event: str) -> int:
        found = self.emulator.collection("inventory").get(
            f"{next(iter(self.emulator._locations))}|{self.variations[event]}")
        return int(found["quantity"]) if found else 0

    def left(self, event: str) -> int:
        capacity = CAPACITIES[self.events.index(event)]
        return capacity - self.online[event] - self.register[event]

    async def platform_left(self, event: str) -> int:
        """What the platform believes it can still sell (register sales it knows of)."""
        async with self.pool.acquire() as conn:
            known = await pos_sold(conn, self.venue, event, settings=SETTINGS)
        capacity = CAPACITIES[self.events.index(event)]
        return capacity - self.online[event] - known

    async def sell_online(self, event: str, quantity: int) -> None:
        if await self.platform_left(event) < quantity:
            return  # the platform does not oversell what it knows of
        async with self.pool.acquire() as conn, conn.transaction():
            order = uuid.uuid4()
            await conn.execute(
                "INSERT INTO orders (id, venue_id, customer_id, event_id, status, total_minor, "
                "currency, purchased_at) SELECT $1, $2, (SELECT id FROM customers WHERE "
                "venue_id = $2 LIMIT 1), $3, 'paid', 1000 * $4, 'USD', now()",
                order, uuid.UUID(self.venue), uuid.UUID(event), quantity)
            await conn.executemany(
                "INSERT INTO tickets (id, order_id, event_id, price_minor) "
                "VALUES ($1, $2, $3, 1000)",
                [(uuid.uuid4(), order, uuid.UUID(event)) for _ in range(quantity)])
        self.online[event] += quantity

    async def refund_online(self, event: str) -> None:
        async with self.pool.acquire() as conn:
            tickets = await conn.fetchval(
                "WITH o AS (UPDATE orders SET status = 'refunded', updated_at = now() "
                "WHERE id = (SELECT id FROM orders WHERE event_id = $1 AND status = 'paid' "
                "ORDER BY purchased_at LIMIT 1) RETURNING id) "
                "SELECT count(*) FROM tickets t JOIN o ON t.order_id = o.id",
                uuid.UUID(event))
        self.online[event] -= int(tickets)

    def sell_at_register(self, event: str, quantity: int) -> None:
        if self.emulator.pos_sale(self.variations[event], quantity) is not None:
            self.register[event] += quantity

    async def deliver(self, order: list[int], replays: int) -> None:
        """Record the webhooks received so far as the webhook processor does, in ``order``,
        and replay the ``replays`` last ones already recorded."""
        fresh = self.webhooks[self.delivered:]
        start = self.delivered
        self.delivered = len(self.webhooks)
        ranked = sorted(range(len(fresh)), key=lambda i: order[i % len(order)] if order else i)
        bodies = [fresh[i] for i in ranked] + self.webhooks[max(0, start - replays):start]
        provider = self.engine.providers["square"]
        async with self.pool.acquire() as conn:
            for body in bodies:
                for change in provider.parse_webhook(WebhookRequest(
                        headers={}, body=body, url="", received_at=datetime.now(UTC))):
                    if change.entity is not Entity.INVENTORY:
                        continue  # catalog webhooks of the product push
                    await conn.fetchval(
                        _WEBHOOKS["record_inbound_change"], uuid.UUID(self.venue), "square",
                        "inventory", change.remote_id, change.change, dict(change.payload),
                        change.dedupe_key, change.occurred_at, datetime.now(UTC),
                        None if change.fields is None else dict(change.fields))

    async def settle(self, *, newest_first: bool = False) -> None:
        """What the inbound processor does with the inventory changes still pending (those
        a sync job's own pull brought were settled by its processor before its push):
        settle each once, in the order given."""
        async with self.pool.acquire() as conn:
            rows = await conn.fetch(
                "SELECT id, remote_id, local_id, payload, dedupe_key FROM inbound_changes "
                "WHERE venue_id = $1 AND entity_type = 'inventory' AND status = 'pending' "
                "ORDER BY id", uuid.UUID(self.venue))
            for row in reversed(rows) if newest_first else rows:
                settled = await settle_inventory_change(
                    conn, conn, venue_id=self.venue, provider="square",
                    local_id=row["local_id"], remote_id=row["remote_id"],
                    payload=row["payload"], key=row["dedupe_key"], settings=SETTINGS)
                await conn.execute(
                    "UPDATE inbound_changes SET status = $2, reason = $3, outcome = $4, "
                    "processed_at = now() WHERE id = $1", row["id"], settled.status,
                    settled.reason, {"pos_sold": settled.sold})

    async def outcomes(self) -> list[tuple[str, str, int]]:
        """Every inventory change settled so far, in the order received: status, reason
        and the register sales it added."""
        async with self.pool.acquire() as conn:
            rows = await conn.fetch(
                "SELECT status, coalesce(reason, '') AS reason, outcome FROM inbound_changes "
                "WHERE venue_id = $1 AND entity_type = 'inventory' AND status <> 'pending' "
                "ORDER BY id", uuid.UUID(self.venue))
        return [(r["status"], r["reason"], int((r["outcome"] or {}).get("pos_sold") or 0))
                for r in rows]


@asynccontextmanager
async def box_office(db_url: str) -> AsyncIterator[Box]:
    pool = await asyncpg.create_pool(db_url, min_size=1, max_size=4, init=init_connection)
    assert pool is not None
    received: list[bytes] = []

    async def hook(request: web.Request) -> web.Response:
        received.append(await request.read())
        return web.Response()

    sink = web.Application()
    sink.router.add_post("/hook", hook)
    provider = load_plugins(["square"]).provider("square")
    try:
        async with EmulatorServer(sink) as webhooks:
            emulator = SquareEmulator(EmulatorSettings(seed=7, enforce_rate_limits=False,
                                                       webhook_url=webhooks.url + "/hook"))
            async with EmulatorServer(emulator) as server, httpx.AsyncClient(timeout=30) as http:
                name = f"Hall {uuid.uuid4().hex[:8]}"
                async with pool.acquire() as conn:
                    await create_platform_schema(conn)
                    sample = await seed_venue(conn, venue_id=uuid.uuid4(), name=name, events=2,
                                              customers=1, orders=0)
                    events = [r[0] for r in await conn.fetch(
                        "SELECT id::text FROM events WHERE venue_id = $1 ORDER BY id",
                        sample.venue_id)]
                    for event, capacity in zip(events, CAPACITIES, strict=True):
                        await conn.execute("UPDATE events SET capacity = $2 WHERE id = $1",
                                           uuid.UUID(event), capacity)
                    account = (await http.get(server.url + "/_emulator/credentials")).json()
                    await conn.execute(
                        "INSERT INTO integration_configs (venue_id, provider, venue_name, status,"
                        " credentials, options) VALUES ($1, 'square', $2, 'connected', $3, $4)",
                        sample.venue_id, name, {"access_token": "oauth"},
                        {"location_id": account["account"]["location_id"]})
                urls = {"square": server.url}
                # Wired as deployed: the sync job settles what its pull brings before it
                # pushes (InboundProcessor, daemon/inventory.py).
                engine = SyncEngine(pool, {"square": provider},
                                    ReferenceCredentialStore(pool, EmulatorTokens(urls)),
                                    http=http, settings=SyncSettings(base_urls=urls,
                                                                     max_backoff_seconds=0.2),
                                    inbound=InboundProcessor(pool, {"square": provider}))
                box = Box(pool, engine, emulator, str(sample.venue_id), events,
                          online=dict.fromkeys(events, 0), register=dict.fromkeys(events, 0),
                          webhooks=received)
                await box.sync(Entity.PRODUCT)
                await box.sync()
                async with pool.acquire() as conn:
                    links = await conn.fetch(
                        "SELECT local_id, remote_id FROM entity_links WHERE entity_type = "
                        "'inventory' AND venue_id = $1", sample.venue_id)
                box.variations = {r["local_id"]: r["remote_id"] for r in links}
                assert set(box.variations) == set(events)
                yield box
    finally:
        await pool.close()


def _check_counts(box: Box, *, exact: bool) -> None:
    for event in box.events:
        count = box.count(event)
        assert count >= 0, f"count below zero: {count}"
        if exact:  # right after a push
            assert count == max(0, box.left(event)), (event, count, box.left(event))


async def _check_recorded(box: Box, known: dict[str, int]) -> None:
    """Register sales on the platform only grow (none is lost, even for a moment, as no
    ticket is returned here) and never pass what the register sold (none counted twice)."""
    async with box.pool.acquire() as conn:
        for event in box.events:
            now = await pos_sold(conn, box.venue, event, settings=SETTINGS)
            assert known[event] <= now <= box.register[event], (event, known[event], now)
            known[event] = now


async def _settle_everything(box: Box) -> None:
    """Every webhook received so far (and each once more), then pulls, all settled."""
    await box.deliver([], replays=len(box.webhooks))
    await box.settle()
    for _ in range(2):
        await box.sync()  # pushes what changed, then pulls the counts
        await box.settle()


async def test_a_register_sale_reaches_the_platform_and_survives_the_next_push(
        db_url: str) -> None:
    async with box_office(db_url) as box:
        show = box.events[0]
        assert box.count(show) == 6
        box.sell_at_register(show, 2)
        await box.sell_online(show, 3)  # the platform thinks 3 are left; really 1
        await box.sync()  # its pull sees the register sale, settled before the push
        assert box.count(show) == 1  # the register sale was not overwritten
        async with box.pool.acquire() as conn:
            assert await pos_sold(conn, box.venue, show, settings=SETTINGS) == 2
        assert [sold for status, _, sold in await box.outcomes()
                if status == "applied" and sold] == [2]
        await box.deliver([], replays=0)  # the same counts by webhook: nothing twice
        await box.settle()
        async with box.pool.acquire() as conn:
            assert await pos_sold(conn, box.venue, show, settings=SETTINGS) == 2
            assert await conn.fetchval("SELECT count(*) FROM pos_sales") == 1
        await box.sync()
        assert box.count(show) == 1


async def test_the_sync_job_settles_register_sales_through_the_inbound_processor(
        db_url: str) -> None:
    """Wired as deployed: the engine's inbound processor settles the counts its pull brings,
    before its push; webhook processing (which runs beside pushes) leaves them pending."""
    async with box_office(db_url) as box:
        show = box.events[0]
        provider = box.engine.providers["square"]
        processor = InboundProcessor(box.pool, {"square": provider})
        box.sell_at_register(show, 2)
        await box.deliver([], replays=0)  # the register sale's count, by webhook
        skipped = await processor.process(venue_id=box.venue, provider="square",
                                          skip_entities=("inventory",))
        assert not skipped
        async with box.pool.acquire() as conn:
            assert await conn.fetchval(
                "SELECT count(*) FROM inbound_changes WHERE entity_type = 'inventory' "
                "AND status = 'pending'") >= 1
            assert await pos_sold(conn, box.venue, show, settings=SETTINGS) == 0
        await box.sell_online(show, 1)
        await box.sync()
        async with box.pool.acquire() as conn:
            assert await pos_sold(conn, box.venue, show, settings=SETTINGS) == 2
            statuses = {r["status"] for r in await conn.fetch(
                "SELECT status FROM inbound_changes WHERE entity_type = 'inventory'")}
            assert "pending" not in statuses
            assert "applied" in statuses
        assert box.count(show) == 6 - 2 - 1


Op = tuple[Any, ...]
ops = st.one_of(
    st.tuples(st.just("online"), st.integers(0, 1), st.integers(1, 3)),
    st.tuples(st.just("refund"), st.integers(0, 1)),
    st.tuples(st.just("register"), st.integers(0, 1), st.integers(1, 2)),
    st.tuples(st.just("push")),
    st.tuples(st.just("webhooks"), st.lists(st.integers(0, 50), max_size=8),
              st.integers(0, 3)),
    st.tuples(st.just("settle"), st.booleans()),
)


@settings(max_examples=30, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(steps=st.lists(ops, min_size=1, max_size=18))
def test_interleaved_sales_never_oversell_and_lose_no_register_sale(
        db_url: str, steps: list[Op]) -> None:
    async def scenario() -> None:
        async with box_office(db_url) as box:
            known = dict.fromkeys(box.events, 0)
            for step in steps:
                kind = step[0]
                if kind == "online":
                    await box.sell_online(box.events[step[1]], step[2])
                elif kind == "refund":
                    await box.refund_online(box.events[step[1]])
                elif kind == "register":
                    box.sell_at_register(box.events[step[1]], step[2])
                elif kind == "push":
                    await box.sync()
                elif kind == "webhooks":
                    await box.deliver(step[1], replays=step[2])
                else:
                    await box.settle(newest_first=step[1])
                    await _check_recorded(box, known)
                _check_counts(box, exact=kind == "push")
            await _settle_everything(box)
            _check_counts(box, exact=True)
            venue = await box.engine.source.venue(box.venue)
            records = [r async for chunk in box.engine.source.read(Entity.INVENTORY, venue)
                       for r in chunk]
            assert len(records) == len(box.events)
            for record in records:
                event = record.data["event"]
                assert event["pos_sold"] == box.register[record.local_id], "a register sale lost"
                assert event["sold"] == box.online[record.local_id]
                assert event["sold"] + event["pos_sold"] == (box.online[record.local_id]
                                                             + box.register[record.local_id])

    asyncio.run(scenario())


def test_the_payloads_stored_are_json(db_url: str) -> None:
    async def scenario() -> None:
        async with box_office(db_url) as box:
            box.sell_at_register(box.events[1], 1)
            await box.sync()
            async with box.pool.acquire() as conn:
                payload = await conn.fetchval(
                    "SELECT payload::text FROM inbound_changes WHERE entity_type = 'inventory' "
                    "AND remote_id = $1 ORDER BY id DESC LIMIT 1", box.variations[box.events[1]])
            assert json.loads(payload)["observed_quantity"] == 3

    asyncio.run(scenario())


async def test_a_count_from_before_syncd_s_last_change_is_ignored(db_url: str) -> None:
    async with box_office(db_url) as box:
        show = box.events[0]
        box.sell_at_register(show, 1)  # Square's count: 5, announced by a webhook
        box.sell_at_register(show, 1)  # 4, announced by another
        await box.sell_online(show, 1)
        await box.sync()  # pulls the 4 and settles it, then pushes: 3
        await box.deliver([], replays=0)  # the webhooks arrive late, the 5 among them
        await box.settle()  # the 5 was made against the allocation before the push: stale
        assert ("ignored", "older than syncd's last change of the count") in [
            (status, reason) for status, reason, _ in await box.outcomes()]
        async with box.pool.acquire() as conn:
            assert await pos_sold(conn, box.venue, show, settings=SETTINGS) == 2
        assert box.count(show) == 3


async def test_inventory_changes_that_cannot_be_settled_say_why(db_url: str) -> None:
    async with box_office(db_url) as box:
        show = box.events[0]
        variation = box.variations[show]
        async with box.pool.acquire() as conn:
            location = next(iter(box.emulator._locations))

            async def settle(remote_id: str, **payload: Any) -> Settled:
                base = {"observed_quantity": 2, "observed_at": datetime.now(UTC).isoformat(),
                        "location_id": location}
                return await settle_inventory_change(
                    conn, conn, venue_id=box.venue, provider="square", local_id=None,
                    remote_id=remote_id, payload={**base, **payload},
                    key=f"k-{uuid.uuid4()}", settings=SETTINGS)

            cases = {
                "keeps no event's count": await settle("NOSUCHVARIATION"),
                "not at": await settle(variation, location_id="ELSEWHERE"),
                "no whole-number count": await settle(variation, observed_quantity="2.5"),
                "no time of the count": await settle(variation, observed_at="soon"),
            }
            for reason, outcome in cases.items():
                assert (outcome.status, reason in outcome.reason) == ("ignored", True), outcome
            assert await conn.fetchval("SELECT count(*) FROM pos_sales") == 0
            applied = await settle(variation)  # 6 allocated, 2 counted: 4 at the register
            assert (applied.status, applied.sold) == ("applied", 4)
            again = await settle(variation, observed_at="2000-01-01T00:00:00Z")
            assert (again.status, again.reason) == ("ignored", "older than syncd's last "
                                                               "change of the count")
            assert await pos_sold(conn, box.venue, show, settings=SETTINGS) == 4
