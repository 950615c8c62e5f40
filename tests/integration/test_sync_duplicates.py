"""No duplicate after a retry, no lost edit, no overwrite between two local records, counts
that match what was stored, and links that survive a reset of the remote side: the engine
against the bundled providers' emulators and real Postgres."""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest

from daemon.provider import Entity
from daemon.queue.types import LeaseLost
from daemon.sync import RunReport
from daemon.sync.engine import WriteGuard
from tests.integration.emulated import ConnectedVenue, connected_venue

CUSTOMERS, EVENTS, ORDERS = 6, 2, 4
P, C, T = Entity.PRODUCT, Entity.CUSTOMER, Entity.TRANSACTION


class Venue(ConnectedVenue):
    async def sync(self, entity: Entity | None = None, *, guard: WriteGuard | None = None,
                   full: bool = False) -> RunReport:
        return await self.engine.run(str(self.venue), self.provider.name, entity=entity,
                                     guard=guard, full=full)

    async def orders(self) -> list[str]:
        return [r[0] for r in await self.pool.fetch(
            "SELECT id::text FROM orders WHERE venue_id = $1 ORDER BY id", self.venue)]

    async def links(self, entity: Entity) -> dict[str, asyncpg.Record]:
        rows = await self.pool.fetch(
            "SELECT local_id, remote_id, state, last_error FROM entity_links "
            "WHERE provider = $1 AND entity_type = $2", self.provider.name, entity.value)
        return {r["local_id"]: r for r in rows}

    def sales_per_order(self) -> Counter[str]:
        """How many remote sales the emulator holds for each local order."""
        held = self.emulator.collection("transaction").values()
        if self.provider.name == "stripe":
            return Counter(str(i["metadata"].get("order_id")) for i in held)
        return Counter(str(o.get("reference_id")) for o in held)

    def paid(self) -> int:
        held = self.emulator.collection("transaction").values()
        if self.provider.name == "stripe":
            return sum(1 for i in held if i["status"] == "paid")
        return sum(1 for o in held if o["state"] == "COMPLETED")


@pytest.fixture
async def stripe(pool: asyncpg.Pool) -> AsyncIterator[Venue]:
    async with connected_venue(pool, "stripe", Venue, customers=CUSTOMERS, events=EVENTS,
                               orders=ORDERS) as venue:
        yield venue


@pytest.fixture
async def square(pool: asyncpg.Pool) -> AsyncIterator[Venue]:
    async with connected_venue(pool, "square", Venue, customers=CUSTOMERS, events=EVENTS,
                               orders=ORDERS) as venue:
        yield venue


@pytest.fixture(params=["stripe", "square"])
async def sales(request: pytest.FixtureRequest, pool: asyncpg.Pool) -> AsyncIterator[Venue]:
    async with connected_venue(pool, request.param, Venue, customers=CUSTOMERS,
                               events=EVENTS, orders=ORDERS) as venue:
        for entity in (P, C):
            report = await venue.sync(entity)
            assert report.failed == 0, report.errors
        yield venue


def lease_lost_after_a_sale(venue: Venue) -> WriteGuard:
    """The job's lease check: lost as soon as the provider holds a sale, so the sales it
    committed are never recorded (what a crash or a stalled worker leaves)."""
    async def check(conn: asyncpg.Connection) -> None:
        if venue.emulator.collection("transaction"):
            raise LeaseLost("job 1: lease lost")
    return check


async def _lose_the_answers(venue: Venue) -> None:
    with pytest.raises(LeaseLost):
        await venue.sync(T, guard=lease_lost_after_a_sale(venue))
    assert venue.emulator.collection("transaction"), "the provider committed a sale"
    linked = [r for r in (await venue.links(T)).values() if r["remote_id"] is not None]
    assert linked == [], "the lease was lost before any sale was recorded"


def _one_paid_sale_per_order(venue: Venue, orders: list[str], report: RunReport) -> None:
    assert report.failed == 0, report.errors
    per_order = venue.sales_per_order()
    assert {o[:40] for o in orders} == set(per_order)
    assert max(per_order.values()) == 1, per_order
    assert venue.paid() == len(orders)


async def test_a_sale_retried_after_a_lost_lease_and_a_rename_is_not_duplicated(
        sales: Venue) -> None:
    orders = await sales.orders()
    await _lose_the_answers(sales)
    await sales.pool.execute("UPDATE events SET name = name || ' (moved)', updated_at = now() "
                             "WHERE venue_id = $1", sales.venue)
    report = await sales.sync(T)
    _one_paid_sale_per_order(sales, orders, report)
    links = await sales.links(T)
    assert all(links[o]["state"] == "synced" and links[o]["remote_id"] for o in orders)


async def test_a_sale_retried_after_the_provider_forgot_its_keys_is_not_duplicated(
        sales: Venue) -> None:
    # Stripe prunes idempotency keys after 24 hours: the retry's key is new to it.
    orders = await sales.orders()
    await _lose_the_answers(sales)
    assert sales.emulator.forget_idempotency() > 0
    report = await sales.sync(T)
    _one_paid_sale_per_order(sales, orders, report)
    again = await sales.sync(T, full=True)
    assert again.sent == 0


async def test_a_sale_never_tried_before_costs_no_lookup(
        sales: Venue) -> None:
    # Sales never attempted are created with no search for an earlier attempt.
    report = await sales.sync(T)
    assert report.failed == 0, report.errors
    lookups = [r for r in sales.emulator.requests
               if (r.method, r.path) in (("GET", "/v1/invoices"), ("POST", "/v2/orders/search"))]
    assert lookups == []


async def test_a_stripe_customer_retried_after_a_lost_lease_and_a_new_email_is_not_duplicated(
        stripe: Venue) -> None:
    async def lost(conn: asyncpg.Connection) -> None:
        if stripe.emulator.collection("customer"):
            raise LeaseLost("job 1: lease lost")

    with pytest.raises(LeaseLost):
        await stripe.sync(C, guard=lost)
    made = len(stripe.emulator.collection("customer"))
    assert made > 0
    await stripe.pool.execute("UPDATE customers SET email = 'new.' || email, updated_at = now() "
                              "WHERE venue_id = $1", stripe.venue)
    report = await stripe.sync(C)
    assert report.failed == 0, report.errors
    held = Counter(c["metadata"]["customer_id"]
                   for c in stripe.emulator.collection("customer").values())
    assert len(held) == CUSTOMERS
    assert max(held.values()) == 1, held
    assert all(c["email"].startswith("new.")
               for c in stripe.emulator.collection("customer").values())


# --- an edit back to an earlier version ----------------------------------------------------


async def test_a_stripe_customer_edited_back_to_an_earlier_version_is_updated(
        stripe: Venue) -> None:
    assert (await stripe.sync(C)).failed == 0
    customer = await stripe.pool.fetchval(
        "SELECT id::text FROM customers WHERE venue_id = $1 ORDER BY id LIMIT 1", stripe.venue)
    for name in ("Ada", "Grace", "Ada"):
        await stripe.pool.execute("UPDATE customers SET first_name = $2, updated_at = now() "
                                  "WHERE id = $1::uuid", customer, name)
        report = await stripe.sync(C)
        assert (report.failed, report.sent) == (0, 1), report.errors
        (held,) = [c for c in stripe.emulator.collection("customer").values()
                   if c["metadata"].get("customer_id") == customer]
        assert held["name"].split()[0] == name


@pytest.mark.parametrize("name", ["stripe", "square", "mailchimp", "quickbooks"])
async def test_an_edit_back_after_an_update_whose_answer_was_lost_reaches_the_provider(
        pool: asyncpg.Pool, name: str) -> None:
    """A to B, the push of B commits at the provider but its answer is never recorded (the
    lease is lost), then back to A: the link still says A, the provider holds B, and A
    must be sent."""
    async with connected_venue(pool, name, Venue, customers=CUSTOMERS, events=EVENTS,
                               orders=ORDERS) as venue:
        assert (await venue.sync(C)).failed == 0
        customer, original = await venue.pool.fetchrow(
            "SELECT id::text, first_name FROM customers WHERE venue_id = $1 ORDER BY id "
            "LIMIT 1", venue.venue)
        remote = (await venue.links(C))[customer]["remote_id"]

        def first_name() -> str:
            (held,) = [r for r in venue.emulator.collection("customer").values()
                       if remote in (r.get("id"), r.get("Id"))]
            return str(held.get("given_name") or held.get("GivenName")
                       or (held.get("merge_fields") or {}).get("FNAME")
                       or str(held.get("name")).split(" ")[0])

        async def lost_after_b(conn: asyncpg.Connection) -> None:
            if first_name() == "Edited":
                raise LeaseLost("job 1: lease lost")

        await venue.pool.execute("UPDATE customers SET first_name = 'Edited', "
                                 "updated_at = now() WHERE id = $1::uuid", customer)
        with pytest.raises(LeaseLost):
            await venue.sync(C, guard=lost_after_b)
        assert first_name() == "Edited", "the provider committed B"
        await venue.pool.execute("UPDATE customers SET first_name = $2, updated_at = now() "
                                 "WHERE id = $1::uuid", customer, original)
        report = await venue.sync(C)
        assert (report.failed, report.sent) == (0, 1), report.errors
        assert first_name() == original
        again = await venue.sync(C, full=True)
        assert again.sent == 0


async def test_a_square_catalog_item_edited_back_to_an_earlier_version_is_updated(
        square: Venue) -> None:
    assert (await square.sync(P)).failed == 0
    event = await square.pool.fetchval(
        "SELECT id::text FROM events WHERE venue_id = $1 ORDER BY id LIMIT 1", square.venue)
    remote = (await square.links(P))[event]["remote_id"]
    for name in ("Matinee", "Evening", "Matinee"):
        await square.pool.execute("UPDATE events SET name = $2, updated_at = now() "
                                  "WHERE id = $1::uuid", event, name)
        report = await square.sync(P)
        assert (report.failed, report.sent) == (0, 1), report.errors
        item = square.emulator.collection("product")[remote]
        assert item["item_data"]["name"] == name


# --- two local records, one e-mail -------------------------------------------------------


async def _add_customer_with_email_of_first(venue: Venue) -> tuple[str, str]:
    """A new local customer with the e-mail of the first one (already synced) and its name
    in capitals (one name to QuickBooks, whose display names ignore case)."""
    first = await venue.pool.fetchrow(
        "SELECT id::text AS id, email, first_name, last_name FROM customers "
        "WHERE venue_id = $1 ORDER BY id LIMIT 1", venue.venue)
    second = str(uuid.uuid5(uuid.NAMESPACE_URL, f"second-of-{first['id']}"))
    await venue.pool.execute(
        "INSERT INTO customers (id, venue_id, email, first_name, last_name) "
        "VALUES ($1::uuid, $2, $3, upper($4), upper($5))", second, venue.venue, first["email"],
        first["first_name"], first["last_name"])
    return first["id"], second


_DATA = ("name", "given_name", "family_name", "metadata", "reference_id", "merge_fields",
         "DisplayName", "GivenName", "FamilyName")


def _remote_customer_of(venue: Venue, remote_id: str) -> dict[str, Any]:
    (held,) = [r for r in venue.emulator.collection("customer").values()
               if remote_id in (r.get("id"), r.get("Id"))]
    return {k: held.get(k) for k in _DATA}


@pytest.mark.parametrize("name", ["stripe", "square", "mailchimp", "quickbooks"])
async def test_a_new_customer_with_a_linked_customers_email_does_not_overwrite_it(
        pool: asyncpg.Pool, name: str) -> None:
    async with connected_venue(pool, name, Venue, customers=CUSTOMERS, events=EVENTS,
                               orders=ORDERS) as venue:
        assert (await venue.sync(C)).failed == 0
        first, second = await _add_customer_with_email_of_first(venue)
        remote = (await venue.links(C))[first]["remote_id"]
        before = _remote_customer_of(venue, remote)
        report = await venue.sync(C)
        assert report.failed == 1
        (error,) = report.errors
        assert error.local_id == second
        assert first in error.error
        assert _remote_customer_of(venue, remote) == before
        links = await venue.links(C)
        assert links[first]["remote_id"] == remote
        assert links[second]["remote_id"] is None
        assert links[second]["state"] == "failed"


async def test_two_new_square_customers_with_one_email_in_a_batch_are_settled_first(
        square: Venue) -> None:
    # Both are new: the first is created, the second fails; neither adopts the other.
    first, second = await _add_customer_with_email_of_first(square)
    await square.pool.execute("UPDATE customers SET email = 'shared@example.com' "
                              "WHERE id = ANY($1::uuid[])", [first, second])
    report = await square.sync(C)
    assert report.failed == 1, report.errors
    assert report.errors[0].local_id in (first, second)
    held = [c for c in square.emulator.collection("customer").values()
            if c.get("email_address") == "shared@example.com"]
    assert len(held) == 1
    links = await square.links(C)
    winner = held[0]["reference_id"]
    assert links[winner]["remote_id"] == held[0]["id"]


# --- counts match what was stored ----------------------------------------------------------


async def test_counts_match_what_was_stored_after_two_link_conflicts_in_a_row(
        square: Venue) -> None:
    """Each time the batch's results are written, another writer has just linked one of
    its remote records: the write conflicts twice in a row."""
    intruders: list[str] = []

    async def guard(conn: asyncpg.Connection) -> None:
        if len(intruders) >= 2:
            return
        linked = {r[0] for r in await square.pool.fetch(
            "SELECT remote_id FROM entity_links WHERE remote_id IS NOT NULL")}
        free = sorted(set(square.emulator.collection("customer")) - linked)
        if not free:
            return
        intruder = f"intruder-{len(intruders)}"
        intruders.append(intruder)
        await square.pool.execute(
            "INSERT INTO entity_links (venue_id, provider, entity_type, local_id, remote_id, "
            "content_hash, state) VALUES ($1, 'square', 'customer', $2, $3, 'x', 'synced')",
            square.venue, intruder, free[0])

    report = await square.sync(C, guard=guard)
    assert len(intruders) == 2
    (customers,) = report.entities
    stored = await square.pool.fetch(
        "SELECT local_id FROM entity_links WHERE entity_type = 'customer' "
        "AND remote_id IS NOT NULL AND local_id NOT LIKE 'intruder-%'")
    failed = await square.pool.fetch(
        "SELECT local_id FROM entity_links WHERE entity_type = 'customer' "
        "AND state = 'failed'")
    assert customers.created + customers.updated == len(stored)
    assert customers.failed == len(failed)
    assert customers.sent == customers.created + customers.updated + customers.failed


# --- the remote side reset -----------------------------------------------------------------


async def test_ids_given_again_after_a_reset_of_the_remote_side_release_stale_links(
        pool: asyncpg.Pool) -> None:
    async with connected_venue(pool, "quickbooks", Venue, customers=CUSTOMERS, events=3,
                               orders=ORDERS) as venue:
        assert (await venue.sync(P)).failed == 0
        events = [r[0] for r in await venue.pool.fetch(
            "SELECT id::text FROM events WHERE venue_id = $1 ORDER BY id", venue.venue)]
        before = await venue.links(P)
        venue.emulator.reset()  # a sandbox reset: the store is empty, ids start again
        # The one created last: after the reset, its new id is one an earlier one held.
        changed = max(events, key=lambda e: int(before[e]["remote_id"]))
        await venue.pool.execute("UPDATE events SET name = name || ' (moved)', "
                                 "updated_at = now() WHERE id = $1::uuid", changed)
        report = await venue.sync(P)
        assert report.failed == 0, report.errors
        links = await venue.links(P)
        new_id = links[changed]["remote_id"]
        stale = [e for e in events if before[e]["remote_id"] == new_id]
        assert stale, "the provider gave an id a link still held"
        assert links[stale[0]]["remote_id"] is None
        assert links[stale[0]]["state"] == "pending"
        again = await venue.sync(P)
        assert again.failed == 0, again.errors
        links = await venue.links(P)
        assert links[stale[0]]["remote_id"] is not None
        assert links[stale[0]]["state"] == "synced"
        held = {r["Id"]: r["Name"] for r in venue.emulator.collection("product").values()}
        names = dict(await venue.pool.fetch(
            "SELECT id::text, name FROM events WHERE venue_id = $1", venue.venue))
        for local in (changed, stale[0]):
            assert held[links[local]["remote_id"]].startswith(names[local][:20])
