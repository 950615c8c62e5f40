"""No change loops between two providers of one venue: 1,000 random edits at the platform,
Mailchimp and QuickBooks settle with every side equal to what the fields' policies say, in
a bounded number of provider calls, and a further round of syncs calls nobody.

Policies: the first name is ``provider_wins`` from both providers, the last name
``platform_wins`` at both, the phone ``provider_wins`` from Mailchimp only. A settle runs
Mailchimp's sync, then QuickBooks', until a round changes nothing; each run pulls and
processes first, then pushes. So after a settle, per customer:

- first name: QuickBooks' latest edit since the last settle, else Mailchimp's, else the
  platform's (provider edits win over the platform's; QuickBooks is processed last);
- last name: the platform's (provider edits are refused and overwritten);
- phone: Mailchimp's latest edit since the last settle, else the platform's.
"""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import asyncpg
import pytest

from tests.integration.inbound_support import World, now_iso, two_way

EDITS = 1000
CUSTOMERS = 4
SIDES = ("platform", "mailchimp", "quickbooks")


@dataclass
class Model:
    """What each customer's fields should be after the next settle."""

    platform: dict[str, dict[str, str]]
    pending: dict[str, dict[tuple[str, str], str]] = field(default_factory=dict)

    def edit(self, side: str, local_id: str, column: str, value: str) -> None:
        if side == "platform":
            self.platform[local_id][column] = value
        else:
            self.pending.setdefault(local_id, {})[(side, column)] = value

    def settle(self) -> None:
        for local_id, edits in self.pending.items():
            row = self.platform[local_id]
            first = edits.get(("quickbooks", "first_name")) or edits.get(
                ("mailchimp", "first_name"))
            if first is not None:
                row["first_name"] = first
            phone = edits.get(("mailchimp", "phone"))
            if phone is not None:
                row["phone"] = phone
        self.pending.clear()


@pytest.fixture
async def world(pool: asyncpg.Pool) -> AsyncIterator[World]:
    async with two_way(pool, customers=CUSTOMERS, rate_limits=False) as w:
        await w.set_inbound("mailchimp", {
            "customer.first_name": {"from": "merge_fields.FNAME", "policy": "provider_wins"},
            "customer.last_name": {"from": "merge_fields.LNAME", "policy": "platform_wins"},
            "customer.phone": {"from": "merge_fields.PHONE", "policy": "provider_wins"}})
        await w.set_inbound("quickbooks", {
            "customer.first_name": {"from": "GivenName", "policy": "provider_wins"},
            "customer.last_name": {"from": "FamilyName", "policy": "platform_wins"}})
        yield w


async def _settle(world: World) -> int:
    """Sync both providers until a round changes nothing; the rounds it took."""
    for rounds in range(1, 6):
        before = (world.writes("mailchimp"), world.writes("quickbooks"),
                  await world.pool.fetchval("SELECT max(updated_at) FROM customers"))
        await world.sync("mailchimp")
        await world.sync("quickbooks")
        after = (world.writes("mailchimp"), world.writes("quickbooks"),
                 await world.pool.fetchval("SELECT max(updated_at) FROM customers"))
        if after == before:
            return rounds
    raise AssertionError("the venue did not settle in 5 rounds: a loop")


async def _edit(world: World, side: str, local_id: str, remote: dict[str, str], column: str,
                value: str) -> None:
    if side == "platform":
        await world.edit_customer(local_id, **{column: value})
        return
    if side == "mailchimp":
        member = next(m for m in world.emulators["mailchimp"].collection("customer").values()
                      if m["id"] == remote["mailchimp"])
        key = {"first_name": "FNAME", "last_name": "LNAME", "phone": "PHONE"}[column]
        member["merge_fields"] = {**member["merge_fields"], key: value}
        member["last_changed"] = now_iso()
        return
    record = world.qbo_customer(remote["quickbooks"])
    record[{"first_name": "GivenName", "last_name": "FamilyName"}[column]] = value
    record["SyncToken"] = str(int(record["SyncToken"]) + 1)
    record["MetaData"] = {**record["MetaData"], "LastUpdatedTime": now_iso()}


async def _check(world: World, model: Model, remotes: dict[str, dict[str, str]]) -> None:
    for local_id, want in model.platform.items():
        row = await world.customer(local_id)
        assert {k: row[k] for k in want} == want, local_id
        member = next(m for m in world.emulators["mailchimp"].collection("customer").values()
                      if m["id"] == remotes[local_id]["mailchimp"])
        fields = member["merge_fields"]
        assert (fields["FNAME"], fields["LNAME"], fields["PHONE"]) == (
            want["first_name"], want["last_name"], want["phone"]), local_id
        record = world.qbo_customer(remotes[local_id]["quickbooks"])
        assert (record["GivenName"], record["FamilyName"]) == (
            want["first_name"], want["last_name"]), local_id


async def test_random_edits_on_every_side_settle_on_the_policies_answer(world: World) -> None:
    await _settle(world)
    rows = await world.pool.fetch("SELECT id, first_name, last_name, phone FROM customers")
    model = Model({str(r["id"]): {"first_name": r["first_name"], "last_name": r["last_name"],
                                  "phone": r["phone"]} for r in rows})
    remotes: dict[str, dict[str, str]] = {}
    for link in await world.pool.fetch("SELECT * FROM entity_links "
                                       "WHERE entity_type = 'customer'"):
        remotes.setdefault(link["local_id"], {})[link["provider"]] = link["remote_id"]
    await _check(world, model, remotes)
    start_writes = world.writes("mailchimp") + world.writes("quickbooks")
    rnd = random.Random(20260101)
    done = settles = 0
    while done < EDITS:
        for _ in range(min(rnd.randint(1, 100), EDITS - done)):
            side = rnd.choice(SIDES)
            local_id = rnd.choice(sorted(model.platform))
            columns = {"platform": ("first_name", "last_name", "phone"),
                       "mailchimp": ("first_name", "last_name", "phone"),
                       "quickbooks": ("first_name", "last_name")}[side]
            column = rnd.choice(columns)
            value = f"{side[0]}{done}"  # every value new: an edit is never a no-op
            await _edit(world, side, local_id, remotes[local_id], column, value)
            model.edit(side, local_id, column, value)
            done += 1
        await _settle(world)
        settles += 1
        model.settle()
        await _check(world, model, remotes)
    # Settled means settled: another round calls no provider.
    writes = world.writes("mailchimp") + world.writes("quickbooks")
    await world.sync("mailchimp")
    await world.sync("quickbooks")
    assert world.writes("mailchimp") + world.writes("quickbooks") == writes
    # Bounded: at most a write per provider per edit, and per customer per settle.
    assert writes - start_writes <= 2 * EDITS + 2 * CUSTOMERS * settles
    statuses = await world.pool.fetch(
        "SELECT status, count(*) FROM inbound_changes GROUP BY status")
    assert {r["status"] for r in statuses} <= {"applied", "ignored"}
