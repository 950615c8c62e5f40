"""Consent is never undone by a push: a Mailchimp unsubscribe (a signed webhook or a pull)
reaches the platform, is held against every later push, and is lifted only when the
platform opts the person in again after it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import httpx
import pytest

from daemon.http.processing import WebhookProcessor
from tests.integration import webhook_support as ws
from tests.integration.inbound_support import (
    MAILCHIMP_SECRET,
    SECRET_ENV,
    World,
    now_iso,
    outcome,
    two_way,
)

OPT_IN = {"customer.marketing_opt_in": {"from": "subscribed", "policy": "provider_wins"}}


@pytest.fixture(autouse=True)
def _secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(SECRET_ENV, MAILCHIMP_SECRET)


@pytest.fixture
async def world(pool: asyncpg.Pool) -> AsyncIterator[World]:
    async with two_way(pool, ("mailchimp",)) as w:
        await w.sync("mailchimp")
        yield w


async def _subscribed_customer(world: World) -> asyncpg.Record:
    row = await world.pool.fetchrow(
        "SELECT * FROM customers WHERE venue_id = $1 AND marketing_opt_in ORDER BY id LIMIT 1",
        world.venue)
    assert row is not None
    assert world.member(row["email"])["status"] == "subscribed"
    return row


def _unsubscribe_at_mailchimp(world: World, email: str) -> dict[str, object]:
    member = world.member(email)
    member["status"] = "unsubscribed"
    member["last_changed"] = now_iso()
    return member


async def _deliver_unsubscribe(world: World, tmp_path: Path, member: dict[str, object]) -> None:
    """The emulator's signed unsubscribe delivery through syncd's webhook endpoint, then
    the processing job (which processes the inbound change it records)."""
    path = f"/webhooks/mailchimp/{world.venue}"
    async with ws.running_app(world.pool, tmp_path) as app, httpx.AsyncClient() as http:
        world.emulators["mailchimp"].update_settings({"webhook_url": app.url + path})
        sent = await http.post(world.servers["mailchimp"].url + "/_emulator/webhook", json={
            "collection": "customer", "id": member["id"], "change": "unsubscribed"})
        assert sent.json()["delivered_status"] == 200
    job = await ws.processing_job(world.pool, "mailchimp")
    processor = WebhookProcessor(world.providers, max_attempts=3, inbound=world.inbound)
    await processor(job, ws.FakeLease(world.pool))


async def _archive_then_push(world: World, customer: asyncpg.Record) -> str:
    """The audience's admin archives the member; the platform then edits the buyer and syncs.
    Mailchimp adds an archived member back as a new one: the status the push gives it."""
    world.member(customer["email"])["status"] = "archived"
    name = f"Renamed {len(world.emulators['mailchimp'].requests)}"
    await world.edit_customer(str(customer["id"]), first_name=name)
    await world.sync("mailchimp")
    member = world.member(customer["email"])
    assert member["merge_fields"].get("FNAME") == name  # the push did run
    return str(member["status"])


async def test_a_signed_unsubscribe_reaches_the_platform_and_no_push_resubscribes(
        world: World, tmp_path: Path) -> None:
    await world.set_inbound("mailchimp", OPT_IN)
    customer = await _subscribed_customer(world)
    member = _unsubscribe_at_mailchimp(world, customer["email"])
    await _deliver_unsubscribe(world, tmp_path, member)
    [change] = [c for c in await world.changes() if c["source"] == "webhook"]
    assert outcome(change) == ("applied", None)
    assert change["local_id"] == str(customer["id"])
    assert (await world.customer(str(customer["id"])))["marketing_opt_in"] is False
    hold = await world.pool.fetchrow("SELECT * FROM consent_holds")
    assert (hold["state"], hold["local_id"], hold["lifted_at"]) == (
        "withdrawn", str(customer["id"]), None)
    assert await _archive_then_push(world, customer) == "transactional"


async def test_a_pulled_unsubscribe_is_held_even_with_no_inbound_mapping(world: World) -> None:
    customer = await _subscribed_customer(world)
    _unsubscribe_at_mailchimp(world, customer["email"])
    await world.sync("mailchimp")  # the pull brings the unsubscribe
    pulled = [c for c in await world.changes() if c["change"] == "unsubscribed"]
    assert [outcome(c) for c in pulled] == [("ignored", "unmapped")]
    assert "held against pushes" in pulled[0]["reason"]
    # The platform still says opted in: only the hold stops the push from subscribing.
    assert (await world.customer(str(customer["id"])))["marketing_opt_in"] is True
    assert await _archive_then_push(world, customer) == "transactional"
    # Still held on the next push, and the one after.
    assert await _archive_then_push(world, customer) == "transactional"


async def test_the_platform_opting_in_again_after_the_unsubscribe_lifts_the_hold(
        world: World) -> None:
    await world.set_inbound("mailchimp", OPT_IN)
    customer = await _subscribed_customer(world)
    _unsubscribe_at_mailchimp(world, customer["email"])
    await world.sync("mailchimp")
    local_id = str(customer["id"])
    assert (await world.customer(local_id))["marketing_opt_in"] is False
    assert await _archive_then_push(world, customer) == "transactional"
    # The buyer opts in again on the platform: a change after the unsubscribe.
    await world.edit_customer(local_id, marketing_opt_in=True)
    world.member(customer["email"])["status"] = "archived"
    await world.sync("mailchimp")
    hold = await world.pool.fetchrow("SELECT * FROM consent_holds")
    assert hold["lifted_at"] is not None
    assert "opted them in again" in hold["lifted_reason"]
    assert world.member(customer["email"])["status"] == "subscribed"


async def test_an_older_subscribe_arriving_late_does_not_lift_a_newer_unsubscribe(
        world: World) -> None:
    customer = await _subscribed_customer(world)
    link = await world.link("mailchimp", str(customer["id"]))
    rows = [("unsubscribed", "2026-03-02T10:00:00+00:00", "u"),
            ("subscribed", "2026-03-01T10:00:00+00:00", "s")]
    for change, at, key in rows:  # the unsubscribe is stored first, the older subscribe after
        await world.pool.execute(
            "INSERT INTO inbound_changes (venue_id, provider, entity_type, remote_id, change, "
            "source, dedupe_key, occurred_at) VALUES ($1, 'mailchimp', 'customer', $2, $3, "
            "'webhook', $4, $5::text::timestamptz)", world.venue, link["remote_id"], change,
            key, at)
    hold = await world.pool.fetchrow("SELECT * FROM consent_holds")
    assert (hold["state"], hold["lifted_at"]) == ("withdrawn", None)
    assert await _archive_then_push(world, customer) == "transactional"
