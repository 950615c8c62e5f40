"""``syncd inbound list|show|apply|ignore`` against a database with inbound changes."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import asyncpg
import pytest

from daemon.cli import main
from tests.integration.inbound_support import World, outcome, two_way
from tests.integration.test_inbound_outcomes import change, row


@pytest.fixture
async def world(pool: asyncpg.Pool, db_url: str, monkeypatch: pytest.MonkeyPatch
                ) -> AsyncIterator[World]:
    monkeypatch.setenv("SYNCD_DATABASE_URL", db_url)
    monkeypatch.setenv("SYNCD_PLUGINS", "mailchimp")
    async with two_way(pool, ("mailchimp",)) as w:
        await w.sync("mailchimp")
        yield w


async def _first(world: World) -> tuple[str, str]:
    link = await world.pool.fetchrow(
        "SELECT local_id, remote_id FROM entity_links WHERE entity_type = 'customer' "
        "ORDER BY local_id LIMIT 1")
    assert link is not None
    return link["local_id"], link["remote_id"]


async def _run(argv: list[str]) -> int:
    """The command as `syncd` runs it (its own event loop, so in a thread of its own)."""
    return await asyncio.to_thread(main, argv)


async def test_list_show_ignore(world: World, capsys: pytest.CaptureFixture[str]) -> None:
    _, remote = await _first(world)
    cid = await change(world, remote, {"merge_fields.FNAME": "Listed"})
    assert await _run(["inbound", "list", "--status", "pending", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [c["id"] for c in listed] == [cid]
    assert await _run(["inbound", "list"]) == 0
    assert f"#{cid}" in capsys.readouterr().out
    assert await _run(["inbound", "show", str(cid), "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["fields"] == {"merge_fields.FNAME": "Listed"}
    assert await _run(["inbound", "ignore", str(cid), "--reason", "a test record"]) == 0
    assert outcome(await row(world, cid)) == ("ignored", "operator")
    assert (await row(world, cid))["reason"] == "a test record"
    capsys.readouterr()
    assert await _run(["inbound", "show", "999999"]) == 1
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        "syncd: error: no inbound change 999999")


async def test_apply_decides_again_and_force_overrides_the_policy(
        world: World, capsys: pytest.CaptureFixture[str]) -> None:
    local, remote = await _first(world)
    await world.set_inbound("mailchimp", {
        "customer.first_name": {"from": "merge_fields.FNAME", "policy": "platform_wins"}})
    cid = await change(world, remote, {"merge_fields.FNAME": "Forced"})
    assert await _run(["inbound", "apply", str(cid)]) == 0
    assert "ignored/conflict" in capsys.readouterr().out
    assert (await world.customer(local))["first_name"] != "Forced"
    assert await _run(["inbound", "apply", str(cid), "--force"]) == 0
    assert capsys.readouterr().out.startswith(f"inbound change {cid}: applied")
    assert (await world.customer(local))["first_name"] == "Forced"
    assert (await row(world, cid))["decided_by"].startswith("operator")
    assert await _run(["inbound", "apply", str(cid)]) == 1
    assert "is applied already" in capsys.readouterr().err
    assert await _run(["inbound", "ignore", str(cid)]) == 1
