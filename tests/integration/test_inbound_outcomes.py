"""Every inbound change gets one outcome and its reason, and none corrupts a platform row:
unknown venues, unlinked and deleted records, fields off the allow-list, bad values,
out-of-order deliveries, floods, failures retried then dead-lettered, several processors."""

from __future__ import annotations

import asyncio
import random
import uuid
from collections.abc import AsyncIterator, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest

from daemon.inbound.fields import InboundSettings
from daemon.inbound.processor import InboundProcessor
from daemon.inbound.sink import PlatformRecords, TableSink
from daemon.provider import InboundDelivery, InboundWrite
from tests.integration.inbound_support import World, outcome, two_way

RULES = {"customer.first_name": {"from": "merge_fields.FNAME", "policy": "provider_wins"},
         "customer.last_name": {"from": "merge_fields.LNAME", "policy": "newest_wins"},
         "customer.email": {"from": "email_address", "policy": "provider_wins"},
         "customer.marketing_opt_in": {"from": "subscribed", "policy": "provider_wins"}}
T0 = datetime(2030, 1, 1, tzinfo=UTC)
ALLOW_EMAIL = InboundSettings(writable=("customers.first_name", "customers.last_name",
                                        "customers.email", "customers.marketing_opt_in"),
                              retry_base_seconds=0.001, max_attempts=3)


@pytest.fixture
async def world(pool: asyncpg.Pool) -> AsyncIterator[World]:
    async with two_way(pool, ("mailchimp",)) as w:
        await w.sync("mailchimp")
        await w.set_inbound("mailchimp", RULES)
        yield w


def processor(world: World, settings: InboundSettings = ALLOW_EMAIL, **kwargs: Any
              ) -> InboundProcessor:
    return InboundProcessor(world.pool, world.providers, settings=settings, **kwargs)


async def _ids(world: World) -> list[tuple[str, str]]:
    rows = await world.pool.fetch(
        "SELECT local_id, remote_id FROM entity_links WHERE provider = 'mailchimp' "
        "AND entity_type = 'customer' ORDER BY local_id")
    return [(r["local_id"], r["remote_id"]) for r in rows]


async def change(world: World, remote_id: str, fields: Mapping[str, Any] | None, *,
                 at: datetime = T0, kind: str = "updated", venue: uuid.UUID | None = None
                 ) -> int:
    value: int = await world.pool.fetchval(
        "INSERT INTO inbound_changes (venue_id, provider, entity_type, remote_id, change, "
        "source, dedupe_key, occurred_at, fields) VALUES ($1, 'mailchimp', 'customer', $2, $3, "
        "'webhook', $4, $5, $6) RETURNING id", venue or world.venue, remote_id, kind,
        uuid.uuid4().hex, at, None if fields is None else dict(fields))
    return value


async def row(world: World, change_id: int) -> asyncpg.Record:
    found = await world.pool.fetchrow("SELECT * FROM inbound_changes WHERE id = $1", change_id)
    assert found is not None
    return found


async def test_each_bad_input_gets_its_outcome_and_reason(world: World) -> None:
    (local, remote), (other_local, other_remote) = (await _ids(world))[:2]
    before = dict(await world.customer(local))
    await world.pool.execute("UPDATE customers SET deleted_at = now() WHERE id = $1::uuid",
                             other_local)
    cases = {
        "venue_unknown": await change(world, remote, {"merge_fields.FNAME": "X"},
                                      venue=uuid.uuid4()),
        "unlinked": await change(world, "not-a-linked-member", {"merge_fields.FNAME": "X"}),
        "deleted at the provider": await change(world, remote, None, kind="deleted"),
        "deleted on the platform": await change(world, other_remote,
                                                {"merge_fields.FNAME": "X"}),
        "invalid_value": await change(world, remote, {"email_address": "not an e-mail",
                                                      "merge_fields.FNAME": "Half"}),
        "no values": await change(world, remote, None),
        "unmapped fields": await change(world, remote, {"merge_fields.COMPANY": "Acme"}),
    }
    counts = await processor(world).process()
    got = {name: outcome(await row(world, cid)) for name, cid in cases.items()}
    assert got == {
        "venue_unknown": ("ignored", "venue_unknown"),
        "unlinked": ("ignored", "unlinked"),
        "deleted at the provider": ("ignored", "deleted"),
        "deleted on the platform": ("ignored", "deleted"),
        "invalid_value": ("dead_letter", "invalid_value"),
        "no values": ("ignored", "unmapped"),
        "unmapped fields": ("ignored", "unmapped"),
    }
    assert sum(v for k, v in counts.items() if ":" not in k) == len(cases)
    bad = await row(world, cases["invalid_value"])
    assert "'not an e-mail' is not an e-mail address" in bad["reason"]
    assert dict(await world.customer(local)) == before  # nothing half-applied
    for cid in cases.values():
        assert (await row(world, cid))["reason"]
    # Processed once: a second pass finds nothing to do.
    assert not await processor(world).process()


async def test_a_field_off_the_allow_list_is_not_written(world: World) -> None:
    opted_in = {str(r["id"]) for r in await world.pool.fetch(
        "SELECT id FROM customers WHERE marketing_opt_in")}
    local, remote = next((lo, re) for lo, re in await _ids(world) if lo in opted_in)
    before = await world.customer(local)
    narrow = InboundSettings(writable=("customers.marketing_opt_in",))
    only_name = await change(world, remote, {"merge_fields.FNAME": "Mallory",
                                             "email_address": "mallory@example.com"})
    await processor(world, narrow).process()
    assert outcome(await row(world, only_name)) == ("ignored", "not_allowed")
    after = await world.customer(local)
    assert (after["first_name"], after["email"]) == (before["first_name"], before["email"])
    mixed = await change(world, remote, {"merge_fields.FNAME": "Mallory", "subscribed": False},
                         at=T0 + timedelta(seconds=1))
    await processor(world, narrow).process()
    done = await row(world, mixed)
    assert outcome(done) == ("applied", None)
    decisions = {f: v["decision"] for f, v in done["outcome"]["fields"].items()}
    assert decisions["customer.first_name"] == "not_allowed"
    assert decisions["customer.marketing_opt_in"] == "written"
    after = await world.customer(local)
    assert (after["first_name"], after["marketing_opt_in"]) == (before["first_name"], False)


async def test_an_older_change_never_wins_over_a_newer_one(world: World) -> None:
    local, remote = (await _ids(world))[0]
    newer = await change(world, remote, {"merge_fields.FNAME": "Newer"},
                         at=T0 + timedelta(minutes=5))
    await processor(world).process()
    older = await change(world, remote, {"merge_fields.FNAME": "Older"}, at=T0)
    await processor(world).process()
    assert outcome(await row(world, newer)) == ("applied", None)
    late = await row(world, older)
    assert outcome(late) == ("ignored", "stale")
    assert f"change {newer}" in late["reason"]
    assert (await world.customer(local))["first_name"] == "Newer"


async def test_a_flood_of_one_records_changes_settles_on_the_newest(world: World) -> None:
    local, remote = (await _ids(world))[0]
    order = list(range(200))
    random.Random(5).shuffle(order)
    for i in order:
        await change(world, remote, {"merge_fields.FNAME": f"Name {i:03d}"},
                     at=T0 + timedelta(seconds=i))
    writes: list[InboundWrite] = []
    table = TableSink(PlatformRecords(world.pool))

    class Counting:
        async def deliver(self, write: InboundWrite, conn: Any = None) -> InboundDelivery:
            writes.append(write)
            return await table.deliver(write, conn)

    counts = await processor(world, sink=Counting()).process()
    assert counts["applied"] == 1
    assert counts["ignored:stale"] == 199
    assert (await world.customer(local))["first_name"] == "Name 199"
    assert len(writes) == 1  # superseded changes never reach the platform
    statuses = await world.pool.fetch("SELECT DISTINCT status FROM inbound_changes")
    assert {r["status"] for r in statuses} == {"applied", "ignored"}


async def test_a_failing_sink_is_retried_then_dead_lettered(world: World) -> None:
    local, remote = (await _ids(world))[0]
    cid = await change(world, remote, {"merge_fields.FNAME": "Retry"})

    class Down:
        async def deliver(self, write: InboundWrite, conn: Any = None) -> InboundDelivery:
            raise ConnectionRefusedError("the platform API is down")

    statuses = []
    for _ in range(3):
        await processor(world, sink=Down()).process()
        failed = await row(world, cid)
        statuses.append((failed["status"], failed["attempts"]))
        await world.pool.execute(
            "UPDATE inbound_changes SET next_attempt_at = now() WHERE id = $1", cid)
    assert statuses == [("failed", 1), ("failed", 2), ("dead_letter", 3)]
    assert "the platform API is down" in (await row(world, cid))["reason"]
    assert (await world.customer(local))["first_name"] != "Retry"


async def test_several_processors_process_each_change_once(world: World) -> None:
    ids = await _ids(world)
    created = []
    for n in range(60):
        local, remote = ids[n % len(ids)]
        created.append(await change(world, remote, {"merge_fields.LNAME": f"L{n}"},
                                    at=T0 + timedelta(seconds=n)))
    seen: list[int | None] = []
    table = TableSink(PlatformRecords(world.pool))

    class Counting:
        async def deliver(self, write: InboundWrite, conn: Any = None) -> InboundDelivery:
            seen.append(write.change_id)
            await asyncio.sleep(0)
            return await table.deliver(write, conn)

    workers = [processor(world, sink=Counting(), name=f"worker-{i}") for i in range(4)]
    results = await asyncio.gather(*(w.process() for w in workers))
    assert sum(r["applied"] + r["ignored"] for r in results) == len(created)
    assert len(seen) == len(set(seen))
    rows = await world.pool.fetch("SELECT status, decided_by FROM inbound_changes")
    assert {r["status"] for r in rows} <= {"applied", "ignored"}
    assert all(r["decided_by"].startswith("worker-") for r in rows)
    # The newest change of each record is what the platform holds.
    for i, (local, _) in enumerate(ids):
        newest = max(n for n in range(60) if n % len(ids) == i)
        assert (await world.customer(local))["last_name"] == f"L{newest}"


async def test_newest_wins_compares_both_sides_change_times(world: World) -> None:
    local, remote = (await _ids(world))[0]
    # The platform edited the last name after the provider's change happened: it wins.
    await world.edit_customer(local, last_name="Platform")
    platform_at = (await world.customer(local))["updated_at"]
    early = await change(world, remote, {"merge_fields.LNAME": "Provider"},
                         at=platform_at - timedelta(seconds=1))
    await processor(world).process()
    lost = await row(world, early)
    assert outcome(lost) == ("ignored", "conflict")
    assert (await world.customer(local))["last_name"] == "Platform"
    # A later provider change wins, and records its own time as the field's.
    late = await change(world, remote, {"merge_fields.LNAME": "Provider"},
                        at=platform_at + timedelta(seconds=1))
    await processor(world).process()
    assert outcome(await row(world, late)) == ("applied", None)
    assert (await world.customer(local))["last_name"] == "Provider"
    written = await world.pool.fetchrow("SELECT * FROM inbound_field_writes")
    assert (written["field"], written["changed_at"]) == (
        "customer.last_name", platform_at + timedelta(seconds=1))
    # A tie goes to the platform.
    tied_at = platform_at + timedelta(seconds=10)
    await world.pool.execute("UPDATE customers SET last_name = 'Tied', updated_at = $2 "
                             "WHERE id = $1::uuid", local, tied_at)
    tie = await change(world, remote, {"merge_fields.LNAME": "Provider again"}, at=tied_at)
    await processor(world).process()
    settled = await row(world, tie)
    assert outcome(settled) == ("ignored", "conflict")
    entry = settled["outcome"]["fields"]["customer.last_name"]
    assert entry["platform_changed_at"] == entry["provider_changed_at"] == tied_at.isoformat()
    assert (await world.customer(local))["last_name"] == "Tied"
