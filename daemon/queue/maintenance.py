"""Housekeeping every worker runs: reclaim expired leases, expire stale jobs, prune, measure.

Every statement locks rows with SKIP LOCKED or is idempotent, so all replicas may run it at
the same time.
"""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg

from daemon.logs import get_logger
from daemon.queue.metrics import observe_depth
from daemon.sql import queries

__all__ = ["Reclaimed", "expire_pending", "prune_finished", "reclaim_expired", "refresh_depth"]

log = get_logger("syncd.queue")
_Q = queries("queue.sql")


@dataclass(frozen=True, slots=True)
class Reclaimed:
    """Jobs taken back from workers that stopped renewing their leases."""

    retried: tuple[int, ...]
    dead: tuple[int, ...]


async def reclaim_expired(
    conn: asyncpg.Connection | asyncpg.Pool, *, limit: int = 100
) -> Reclaimed:
    """Put jobs whose lease expired back to pending (or dead_letter when out of attempts)."""
    rows = await conn.fetch(_Q["reclaim_expired"], limit)
    retried = tuple(r["id"] for r in rows if r["status"] == "pending")
    dead = tuple(r["id"] for r in rows if r["status"] == "dead_letter")
    for r in rows:
        log.warning("queue.lease_reclaimed", job_id=r["id"], owner=r["lease_owner"],
                    status=r["status"])
    if retried:
        await conn.execute(_Q["notify"])
    return Reclaimed(retried=retried, dead=dead)


async def expire_pending(conn: asyncpg.Connection | asyncpg.Pool, *, limit: int = 1000) -> int:
    """Mark pending jobs past their expiry as failed (error_kind expired); how many."""
    rows = await conn.fetch(_Q["expire_pending"], limit)
    if rows:
        log.warning("queue.jobs_expired", count=len(rows))
    return len(rows)


async def prune_finished(
    conn: asyncpg.Connection | asyncpg.Pool, *, older_than_s: float, batch: int = 5000
) -> int:
    """Delete completed and failed jobs finished more than ``older_than_s`` ago; how many."""
    total = 0
    while True:
        status = await conn.execute(_Q["prune_finished"], older_than_s, batch)
        deleted = int(status.split()[-1])
        total += deleted
        if deleted < batch:
            break
    if total:
        log.info("queue.pruned", count=total)
    return total


async def refresh_depth(conn: asyncpg.Connection | asyncpg.Pool) -> None:
    """Update the depth gauge from the database."""
    observe_depth(await conn.fetch(_Q["active_depth"]))
