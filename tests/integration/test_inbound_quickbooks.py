"""A customer's name corrected in QuickBooks: it reaches the platform under provider_wins
and is not pushed back; under platform_wins it is refused and the platform's name goes
back to QuickBooks; either way nothing loops."""

from __future__ import annotations

from collections.abc import AsyncIterator

import asyncpg
import pytest

from tests.integration.inbound_support import World, now_iso, outcome, two_way


def _rules(policy: str) -> dict[str, dict[str, str]]:
    return {"customer.first_name": {"from": "GivenName", "policy": policy},
            "customer.last_name": {"from": "FamilyName", "policy": policy}}


@pytest.fixture
async def world(pool: asyncpg.Pool) -> AsyncIterator[World]:
    async with two_way(pool, ("quickbooks",)) as w:
        yield w


async def _start(world: World, policy: str) -> None:
    await world.set_inbound("quickbooks", _rules(policy))
    await world.sync("quickbooks")
    await world.sync("quickbooks")  # pulls the creates back: syncd's own, ignored


async def _correct_in_quickbooks(world: World) -> tuple[str, str, str]:
    """An accountant corrects a customer's first name in QuickBooks: (local id, remote id,
    the name the platform had)."""
    row = await world.pool.fetchrow(
        "SELECT id, first_name FROM customers WHERE venue_id = $1 ORDER BY id LIMIT 1",
        world.venue)
    assert row is not None
    link = await world.link("quickbooks", str(row["id"]))
    record = world.qbo_customer(link["remote_id"])
    record["GivenName"] = "Corrected"
    record["SyncToken"] = str(int(record.get("SyncToken") or 0) + 1)
    record["MetaData"] = {**record["MetaData"], "LastUpdatedTime": now_iso()}
    return str(row["id"]), link["remote_id"], row["first_name"]


async def test_the_first_runs_only_see_their_own_creates_come_back(world: World) -> None:
    await _start(world, "provider_wins")
    customers = [c for c in await world.changes() if c["entity_type"] == "customer"]
    assert len(customers) == 6
    assert {outcome(c) for c in customers} == {("ignored", "echo")}
    assert all(c["local_id"] is not None for c in customers)


async def test_a_correction_reaches_the_platform_under_provider_wins(world: World) -> None:
    await _start(world, "provider_wins")
    local_id, remote_id, _ = await _correct_in_quickbooks(world)
    writes = world.writes("quickbooks")
    await world.sync("quickbooks")
    assert (await world.customer(local_id))["first_name"] == "Corrected"
    [change] = [c for c in await world.changes() if c["status"] == "applied"]
    assert (change["remote_id"], change["reason"]) == (remote_id, "wrote customer.first_name")
    assert world.writes("quickbooks") == writes  # not pushed back to where it came from
    await world.sync("quickbooks")
    assert world.writes("quickbooks") == writes
    assert world.qbo_customer(remote_id)["GivenName"] == "Corrected"


async def test_a_correction_is_refused_under_platform_wins_and_overwritten(
        world: World) -> None:
    await _start(world, "platform_wins")
    local_id, remote_id, name = await _correct_in_quickbooks(world)
    await world.sync("quickbooks")
    assert (await world.customer(local_id))["first_name"] == name
    [change] = [c for c in await world.changes() if c["reason_code"] == "conflict"]
    assert change["status"] == "ignored"
    assert "customer.first_name" in change["reason"]
    # The platform's value went back to QuickBooks in the same run, after the pull.
    assert world.qbo_customer(remote_id)["GivenName"] == name
    writes = world.writes("quickbooks")
    await world.sync("quickbooks")  # its echo comes back and is recognised: no loop
    await world.sync("quickbooks")
    assert world.writes("quickbooks") == writes
    assert (await world.customer(local_id))["first_name"] == name
