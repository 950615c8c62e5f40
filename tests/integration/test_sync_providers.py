"""The engine against the bundled providers' emulators: initial sync, a re-run with no
change that writes nothing, and lost answers after commit that leave no duplicate."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest

from daemon.provider import Direction, Entity
from daemon.sync import RunOutcome
from tests.integration.emulated import ConnectedVenue, connected_venue

CUSTOMERS, EVENTS, ORDERS = 14, 3, 4
SIZES = {Entity.CUSTOMER: CUSTOMERS, Entity.PRODUCT: EVENTS, Entity.TRANSACTION: ORDERS,
         Entity.INVENTORY: EVENTS}  # every seeded event has a capacity


class Bundled(ConnectedVenue):
    def pushed(self) -> list[Entity]:
        caps = self.provider.capabilities
        return [e for e in Entity if caps.supports(e, Direction.PUSH)]


@pytest.fixture(params=["square", "stripe", "quickbooks", "mailchimp"])
async def bundled(request: pytest.FixtureRequest, pool: asyncpg.Pool
                  ) -> AsyncIterator[Bundled]:
    async with connected_venue(pool, request.param, Bundled, customers=CUSTOMERS,
                               events=EVENTS, orders=ORDERS) as venue:
        yield venue


def _counts(report: Any) -> dict[Entity, int]:
    return {e.entity: e.created + e.updated for e in report.entities}


async def test_initial_sync_then_no_change_writes_nothing(bundled: Bundled) -> None:
    report = await bundled.engine.run(str(bundled.venue), bundled.provider.name)
    assert report.outcome is RunOutcome.OK, report.error
    assert report.failed == 0, report.errors
    assert _counts(report) == {e: SIZES[e] for e in bundled.pushed()}
    writes = bundled.writes()
    again = await bundled.engine.run(str(bundled.venue), bundled.provider.name)
    assert again.outcome is RunOutcome.OK, again.error
    assert again.sent == 0
    assert bundled.writes() == writes
    full = await bundled.engine.run(str(bundled.venue), bundled.provider.name, full=True)
    assert full.sent == 0
    assert bundled.writes() == writes


async def test_answers_lost_after_commit_leave_no_duplicate(bundled: Bundled) -> None:
    entity = Entity.CUSTOMER
    bundled.emulator.update_settings({"reset_after_commit_rate": 0.5})
    await bundled.engine.run(str(bundled.venue), bundled.provider.name, entity=entity)
    bundled.emulator.update_settings({"reset_after_commit_rate": 0.0})
    report = await bundled.engine.run(str(bundled.venue), bundled.provider.name,
                                      entity=entity)
    assert report.outcome is RunOutcome.OK, report.error
    assert report.failed == 0, report.errors
    stored = bundled.emulator.collection("customer")
    assert len(stored) == CUSTOMERS
