"""Running one integration outside the workers (``syncd sync``) under the queue's rules.

:func:`hold_integration` takes the integration's running slot as a worker's claim does (the
claim's per-integration lock, then the one-running index): a job row, running from the
start, leased to the caller and renewed by a heartbeat while the block runs. No worker
claims a job of the integration meanwhile, and the caller fences its writes with the
lease, exactly as a job's handler does. The block's end completes the row, or fails it
with the reason.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from daemon.db import PoolTimeout
from daemon.errors import SyncdError
from daemon.logs import get_logger
from daemon.queue.types import Job
from daemon.sql import queries
from daemon.worker.context import RunContext

__all__ = ["Hold", "IntegrationBusy", "hold_integration"]

log = get_logger("syncd.worker")
_Q = queries("queue.sql")


class IntegrationBusy(SyncdError):
    """A job of the integration is running."""


@dataclass(slots=True)
class Hold:
    """The held slot: the job row and its lease."""

    ctx: RunContext
    #: Set by the caller: the error the row fails with (None: it completes).
    error: str | None = None
    error_kind: str = "permanent"

    @property
    def job(self) -> Job:
        return self.ctx.job


async def _running(pool: asyncpg.Pool, venue_id: uuid.UUID, provider: str
                   ) -> asyncpg.Record | None:
    row: asyncpg.Record | None = await pool.fetchrow(_Q["running_for_integration"],
                                                     venue_id, provider)
    return row


def _busy(venue: str, provider: str, row: asyncpg.Record | None) -> IntegrationBusy:
    who = ""
    if row is not None:
        started: datetime | None = row["started_at"]
        since = f" since {started:%Y-%m-%d %H:%M:%S} UTC" if started is not None else ""
        who = f" (job {row['id']} on {row['lease_owner']}{since})"
    return IntegrationBusy(f"a {provider} sync of venue {venue} is running{who}; run this "
                           "again when it has finished, or pass --wait")


async def _take(pool: asyncpg.Pool, venue_id: uuid.UUID, provider: str, *, owner: str,
                entity: str, payload: Mapping[str, Any], lease_seconds: float
                ) -> Job | None:
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute(_Q["lock_integration"], venue_id, provider)
        for r in await conn.fetch(_Q["reclaim_integration"], venue_id, provider):
            log.warning("queue.lease_reclaimed", job_id=r["id"], status=r["status"])
        row = await conn.fetchrow(_Q["hold_integration"], venue_id, provider, "sync", entity,
                                  dict(payload), owner, lease_seconds, None)
    return Job.from_record(row) if row is not None else None


async def _heartbeat(pool: asyncpg.Pool, ctx: RunContext, every: float) -> None:
    while True:
        await asyncio.sleep(every)
        try:
            rows = await pool.fetch(_Q["heartbeat"], [ctx.job.id], [ctx.job.lease_token],
                                    ctx.lease_seconds)
        except Exception as exc:  # the next beat tries again; the lease outlasts two
            log.warning("sync.hold_heartbeat_failed", job_id=ctx.job.id,
                        error=f"{type(exc).__name__}: {exc}"[:300])
            continue
        if not rows:
            log.warning("job.lease_lost", job_id=ctx.job.id)
            ctx.lose()
            return


@asynccontextmanager
async def hold_integration(
    pool: asyncpg.Pool,
    venue_id: uuid.UUID,
    provider: str,
    *,
    owner: str,
    lease_seconds: float,
    heartbeat_seconds: float,
    entity: str = "all",
    payload: Mapping[str, Any] | None = None,
    wait: bool = False,
    poll_seconds: float = 1.0,
    venue_label: str | None = None,
) -> AsyncIterator[Hold]:
    """Hold the integration's running slot for the block.

    :param wait: wait for a running job to finish instead of raising
        :class:`IntegrationBusy`.
    """
    label = venue_label or str(venue_id)
    started = time.monotonic()
    while True:
        job = await _take(pool, venue_id, provider, owner=owner, entity=entity,
                          payload=payload or {}, lease_seconds=lease_seconds)
        if job is not None:
            break
        running = await _running(pool, venue_id, provider)
        if not wait:
            raise _busy(label, provider, running)
        if running is not None:
            log.info("sync.waiting", venue_id=str(venue_id), provider=provider,
                     job_id=running["id"], owner=running["lease_owner"],
                     waited_s=round(time.monotonic() - started, 1))
        await asyncio.sleep(poll_seconds)
    hold = Hold(RunContext(pool, job, lease_seconds))
    beat = asyncio.create_task(_heartbeat(pool, hold.ctx, heartbeat_seconds))
    try:
        yield hold
    except Exception as exc:
        hold.error = hold.error or f"{type(exc).__name__}: {exc}"
        raise
    except BaseException:  # Ctrl-C, cancelled
        hold.error = hold.error or "interrupted"
        raise
    finally:
        beat.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await beat
        await asyncio.shield(_finish(pool, hold))


async def _finish(pool: asyncpg.Pool, hold: Hold) -> None:
    job = hold.job
    if hold.ctx.completing:
        return  # completed inside the caller's own transaction
    try:
        if hold.error is None:
            await pool.execute(_Q["complete_held"], job.id, job.lease_token)
        else:
            await pool.execute(_Q["fail_many"], [job.id], [job.lease_token],
                               [hold.error[:2000]], [hold.error_kind])
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, PoolTimeout) as exc:
        # The lease runs out and housekeeping settles the row.
        log.error("sync.hold_release_failed", job_id=job.id,
                  error=f"{type(exc).__name__}: {exc}"[:300])
