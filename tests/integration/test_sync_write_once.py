"""Write-once remote records (Stripe's paid invoices, Square's paid orders) against their
emulators: a sale changed after it was sent is reported frozen once, never sent, and never
fails a run; links an earlier run left failed by such an update are settled without a call."""

from __future__ import annotations

from collections.abc import AsyncIterator

import asyncpg
import pytest
from structlog.testing import capture_logs

from daemon.provider import Entity
from daemon.queue.types import LeaseLost
from daemon.sync import RunOutcome, RunReport, recompute_health
from daemon.sync.engine import WriteGuard
from tests.integration.emulated import ConnectedVenue, connected_venue

CUSTOMERS, EVENTS, ORDERS = 8, 2, 4
T = Entity.TRANSACTION


class Sales(ConnectedVenue):
    async def sync(self, *, full: bool = False, dry_run: bool = False,
                   guard: WriteGuard | None = None) -> RunReport:
        """A run of the sales alone: any write it makes is for a sale."""
        return await self.engine.run(str(self.venue), self.provider.name, entity=T,
                                     full=full, dry_run=dry_run, guard=guard)

    async def sale(self) -> str:
        """The first sale (one per buyer in this sample)."""
        sale: str = await self.pool.fetchval(
            "SELECT id::text FROM orders WHERE venue_id = $1 ORDER BY id LIMIT 1", self.venue)
        return sale

    async def rename_buyer(self, sale: str) -> None:
        """The buyer of ``sale`` changes name and e-mail: mapped by both providers' sales."""
        await self.pool.execute(
            "UPDATE customers SET last_name = last_name || '-Smith', "
            "email = 'renamed.' || email, updated_at = now() "
            "WHERE id = (SELECT customer_id FROM orders WHERE id = $1::uuid)", sale)

    async def link(self, sale: str) -> asyncpg.Record:
        row: asyncpg.Record = await self.pool.fetchrow(
            "SELECT remote_id, content_hash, state, last_error, last_synced_at "
            "FROM entity_links WHERE provider = $1 AND entity_type = 'transaction' "
            "AND local_id = $2", self.provider.name, sale)
        return row


@pytest.fixture(params=["stripe", "square"])
async def sales(request: pytest.FixtureRequest, pool: asyncpg.Pool) -> AsyncIterator[Sales]:
    async with connected_venue(pool, request.param, Sales, customers=CUSTOMERS,
                               events=EVENTS, orders=ORDERS) as venue:
        first = await venue.engine.run(str(venue.venue), venue.provider.name)
        assert first.failed == 0, first.errors
        (sold,) = [e for e in first.entities if e.entity is T]
        assert sold.created == ORDERS
        yield venue


def _sold(report: RunReport) -> int:
    (sold,) = [e for e in report.entities if e.entity is T]
    return sold.frozen


async def test_a_changed_sale_is_frozen_once_and_never_sent(sales: Sales) -> None:
    sale = await sales.sale()
    before = await sales.link(sale)
    writes = sales.writes()
    await sales.rename_buyer(sale)
    with capture_logs() as logs:
        report = await sales.sync()
    assert report.status == "completed", report.errors
    assert report.outcome is RunOutcome.OK
    assert _sold(report) == 1
    assert report.failed == 0
    assert report.sent == 0
    assert sales.writes() == writes
    (event,) = [e for e in logs if e["event"] == "sync.frozen"]
    assert (event["count"], event["first"], event["entity"]) == (1, sale, "transaction")
    after = await sales.link(sale)
    assert after["state"] == "synced"
    assert after["remote_id"] == before["remote_id"]
    assert after["content_hash"] != before["content_hash"]
    assert after["last_synced_at"] == before["last_synced_at"]
    kind = sales.provider.capabilities.entities[T].remote_kind
    assert after["last_error"].startswith(f"not sent: {kind} cannot be changed at ")


async def test_a_frozen_sale_is_not_reported_again_until_it_changes_again(
        sales: Sales) -> None:
    sale = await sales.sale()
    await sales.rename_buyer(sale)
    await sales.sync()
    writes = sales.writes()
    again = await sales.sync()
    assert _sold(again) == 0
    assert again.sent == 0
    full = await sales.sync(full=True)
    assert _sold(full) == 0
    assert full.unchanged == ORDERS
    await sales.rename_buyer(sale)
    changed = await sales.sync()
    assert _sold(changed) == 1
    assert changed.sent == 0
    assert sales.writes() == writes


async def test_a_frozen_sale_leaves_the_integration_healthy(sales: Sales) -> None:
    sale = await sales.sale()
    await sales.rename_buyer(sale)
    await sales.sync()
    config = await sales.pool.fetchrow(
        "SELECT last_error, failure_count FROM integration_configs WHERE provider = $1",
        sales.provider.name)
    assert config["last_error"] is None
    assert config["failure_count"] == 0
    log = await sales.pool.fetchrow(
        "SELECT status, error_count, details FROM sync_logs ORDER BY started_at DESC LIMIT 1")
    assert (log["status"], log["error_count"]) == ("completed", 0)
    assert log["details"]["entities"]["transaction"]["frozen"] == 1
    health = await recompute_health(sales.pool, str(sales.venue), sales.provider.name)
    assert health.status == "healthy"


async def test_sales_left_failed_by_a_refused_update_heal_without_a_call(
        sales: Sales) -> None:
    # What runs did before write-once entities: the update was sent, refused, and the
    # link left failed with the old digest (retried, and refused, on every run).
    changed, unchanged = [r[0] for r in await sales.pool.fetch(
        "SELECT id::text FROM orders WHERE venue_id = $1 ORDER BY id LIMIT 2", sales.venue)]
    await sales.rename_buyer(changed)
    await sales.pool.execute(
        "UPDATE entity_links SET state = 'failed', last_error = 'cannot be changed' "
        "WHERE entity_type = 'transaction' AND local_id = ANY($1)", [changed, unchanged])
    writes = sales.writes()
    report = await sales.sync()
    assert report.status == "completed", report.errors
    assert _sold(report) == 2
    assert report.failed == 0
    assert report.sent == 0
    assert sales.writes() == writes
    states = await sales.pool.fetch(
        "SELECT state FROM entity_links WHERE entity_type = 'transaction' "
        "AND local_id = ANY($1)", [changed, unchanged])
    assert [r["state"] for r in states] == ["synced", "synced"]
    again = await sales.sync()
    assert _sold(again) == 0


async def test_a_dry_run_counts_frozen_sales_and_settles_nothing(sales: Sales) -> None:
    sale = await sales.sale()
    before = await sales.link(sale)
    await sales.rename_buyer(sale)
    report = await sales.sync(dry_run=True)
    assert _sold(report) == 1
    assert report.entities[0].planned == []
    assert await sales.link(sale) == before


async def test_frozen_sales_are_settled_under_the_lease_check(sales: Sales) -> None:
    sale = await sales.sale()
    before = await sales.link(sale)
    await sales.rename_buyer(sale)
    checks: list[bool] = []

    def lease(lost: bool) -> WriteGuard:
        async def check(conn: asyncpg.Connection) -> None:
            checks.append(lost)
            if lost:
                raise LeaseLost("job 1: lease lost")
        return check

    with pytest.raises(LeaseLost):
        await sales.sync(guard=lease(lost=True))
    # The settle is refused, and so are the run's records of work.
    assert checks == [True, True]
    assert await sales.link(sale) == before
    report = await sales.sync(guard=lease(lost=False))
    assert checks[2:] == [False] * (len(checks) - 2)
    assert len(checks) >= 4  # the settle, the sync state, the records of work
    assert _sold(report) == 1
    assert (await sales.link(sale))["state"] == "synced"
