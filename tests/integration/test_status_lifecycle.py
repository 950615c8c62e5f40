"""An integration's status: disconnected until its credentials work, then connected."""

from __future__ import annotations

import asyncpg

from daemon.sync import RunOutcome
from tests.integration.emulated import ConnectedVenue, connected_venue


async def test_a_first_successful_sync_marks_a_disconnected_integration_connected(
        pool: asyncpg.Pool) -> None:
    async with connected_venue(pool, "stripe", ConnectedVenue, customers=2, events=1,
                               orders=1) as venue:
        await pool.execute("UPDATE integration_configs SET status = 'disconnected', "
                           "connected_at = NULL")
        report = await venue.engine.run(str(venue.venue), "stripe")
        assert report.outcome is RunOutcome.OK
        row = await pool.fetchrow("SELECT status, connected_at FROM integration_configs")
        assert row["status"] == "connected"
        assert row["connected_at"] is not None
