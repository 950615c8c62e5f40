"""The scheduler: while leader, turns every enabled integration's cron schedules into jobs.

Leadership is a session advisory lock held on one connection: one replica schedules, and if
its connection drops Postgres frees the lock for another. Leadership is a matter of
efficiency, not correctness: each tick is recorded in ``schedule_ticks`` under a primary key
(integration, entity, tick) in the same transaction that enqueues its job, so a tick fires
once however many schedulers race (a lost lock, a split second of two leaders, a restart).

Only the latest tick at or before now is considered: after downtime, the missed ticks run
once, as one job, not once each; and a tick older than one already fired never fires.

A tick missed while no scheduler ran (downtime, or the first start of a config, when every
integration's latest tick is in the past) is a *catch-up* tick: its job is due at a point
spread over ``catchup_spread_seconds`` from now, fixed per integration and tick, so a large
config does not make every integration due at once.

A pass over the schedules checks for :meth:`Scheduler.stop` between integrations: with
10,000 venues a first pass fires 20,000 ticks, and shutdown must not wait for them.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg

from daemon.logs import get_logger
from daemon.queue.enqueue import DEFAULT_TTL_SECONDS, enqueue
from daemon.queue.types import LANES
from daemon.scheduler.ticks import InvalidSchedule, latest_tick
from daemon.sql import queries

__all__ = ["LEADER_KEY", "FiredTick", "Scheduler", "jitter_for"]

log = get_logger("syncd.scheduler")
_Q = queries("scheduler.sql")

#: Advisory lock key of the scheduler leader: the first 8 bytes of sha256("syncd.scheduler").
LEADER_KEY = int.from_bytes(hashlib.sha256(b"syncd.scheduler").digest()[:8], "big", signed=True)
_DB_ERRORS = (OSError, asyncpg.PostgresError, asyncpg.InterfaceError)
#: Where a scaled clock (``time_scale``) counts from.
_EPOCH = datetime(2024, 1, 1, tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class FiredTick:
    """A tick this scheduler recorded, and the job it enqueued (None if coalesced)."""

    integration_id: uuid.UUID
    entity_type: str
    tick: datetime
    job_id: int | None


def jitter_for(integration_id: uuid.UUID, entity: str, tick: datetime, spread: float) -> float:
    """A delay in ``[0, spread)`` fixed by (integration, entity, tick): integrations that
    share a cron expression start spread out, and the same tick always gets the same delay."""
    if spread <= 0:
        return 0.0
    digest = hashlib.sha256(f"{integration_id}/{entity}/{tick.isoformat()}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64 * spread


class Scheduler:
    """Fires cron ticks into the queue; :meth:`run` does so only while leader."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        *,
        poll_seconds: float = 10.0,
        jitter_seconds: float = 0.0,
        retention_seconds: float = 14 * 86400.0,
        ttl_seconds: float = DEFAULT_TTL_SECONDS,
        max_attempts: int | None = None,
        catchup_spread_seconds: float = 0.0,
        clock: Callable[[], datetime] | None = None,
        time_scale: float = 1.0,
    ) -> None:
        """``time_scale`` (tests and demos) runs the schedules' clock that many times faster
        than real time: ticks are those of the scaled clock, their jobs fall due in real
        time. Every replica computes the same scaled time (it is counted from a fixed
        epoch), so they agree on the ticks."""
        if time_scale <= 0:
            raise ValueError("time_scale must be positive")
        self.time_scale = time_scale
        self.pool = pool
        self.poll_seconds = poll_seconds
        self.jitter_seconds = jitter_seconds
        self.catchup_spread_seconds = catchup_spread_seconds
        self.retention_seconds = retention_seconds
        self.ttl_seconds = ttl_seconds
        self.max_attempts = max_attempts
        self.clock = clock or (lambda: datetime.now(UTC))
        self.is_leader = False
        self._stop = asyncio.Event()
        self._fired: dict[tuple[uuid.UUID, str], datetime] = {}
        self._reported: set[tuple[uuid.UUID, str, str]] = set()

    def stop(self) -> None:
        self._stop.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    # --- one pass ----------------------------------------------------------------------

    async def fire_due(self, now: datetime | None = None) -> list[FiredTick]:
        """Enqueue the latest due tick of every schedule not yet fired; what was fired.

        Stops between integrations once :meth:`stop` is called; the rest fire next pass."""
        now = now or self.clock()
        fired: list[FiredTick] = []
        rows = await self.pool.fetch(_Q["schedules"])
        if self._stop.is_set():
            return fired
        for done, row in enumerate(rows):
            if self._stop.is_set():
                log.info("scheduler.pass_interrupted", integrations=done, left=len(rows) - done)
                break
            schedules = row["schedules"]
            if not isinstance(schedules, Mapping):
                continue
            for entity, spec in schedules.items():
                result = await self._fire_one(row, str(entity), spec, now)
                if result is not None:
                    fired.append(result)
        return fired

    def scaled(self, now: datetime) -> datetime:
        """The schedules' time at real time ``now``."""
        if self.time_scale == 1.0:
            return now
        return _EPOCH + (now - _EPOCH) * self.time_scale

    def real(self, scaled: datetime) -> datetime:
        """The real time at the schedules' time ``scaled``."""
        if self.time_scale == 1.0:
            return scaled
        return _EPOCH + (scaled - _EPOCH) / self.time_scale

    def _run_at(self, integration_id: uuid.UUID, entity: str, tick: datetime,
                now: datetime) -> tuple[datetime, bool]:
        """When a tick's job falls due, and whether the tick is a catch-up one (missed
        while no scheduler ran: older than two polls)."""
        delay = jitter_for(integration_id, entity, tick, self.jitter_seconds)
        real_tick = self.real(tick)
        run_at = real_tick + timedelta(seconds=delay)
        catchup = now - real_tick > timedelta(seconds=2 * self.poll_seconds + 1)
        if catchup and self.catchup_spread_seconds > 0:
            spread = jitter_for(integration_id, entity, tick, self.catchup_spread_seconds)
            run_at = max(run_at, now + timedelta(seconds=spread))
        return run_at, catchup

    async def _fire_one(
        self, row: Mapping[str, Any], entity: str, spec: Any, now: datetime
    ) -> FiredTick | None:
        integration_id: uuid.UUID = row["id"]
        if not isinstance(spec, Mapping) or not spec.get("cron"):
            return None
        expr = str(spec["cron"])
        lane = str(spec.get("lane") or "NORMAL").upper()
        try:
            if lane not in LANES:
                raise InvalidSchedule(f"unknown lane {lane!r}")
            tick = latest_tick(expr, row["timezone"], self.scaled(now))
        except InvalidSchedule as exc:
            key = (integration_id, entity, expr)
            if key not in self._reported:
                self._reported.add(key)
                log.error("scheduler.invalid_schedule", integration_id=str(integration_id),
                          entity=entity, cron=expr, timezone=row["timezone"], error=str(exc))
            return None
        if tick is None or self._fired.get((integration_id, entity)) == tick:
            return None
        run_at, catchup = self._run_at(integration_id, entity, tick, now)
        async with self.pool.acquire() as conn, conn.transaction():
            claimed = await conn.fetchval(_Q["claim_tick"], integration_id, entity, tick)
            if claimed is None:
                self._fired[(integration_id, entity)] = tick
                return None
            job_id = await enqueue(
                conn,
                venue_id=row["venue_id"],
                provider=row["provider"],
                entity_type=entity,
                operation="sync",
                lane=lane,
                payload={"trigger": "schedule", "tick": tick.isoformat(),
                         "direction": spec.get("direction")},
                idempotency_key=f"schedule:{integration_id}:{entity}:{tick.isoformat()}",
                correlation_id=f"schedule:{integration_id}:{entity}:{tick.isoformat()}",
                run_at=run_at,
                ttl_seconds=self.ttl_seconds,
                max_attempts=self.max_attempts,
            )
            if job_id is not None:
                await conn.execute(_Q["set_tick_job"], integration_id, entity, tick, job_id)
        self._fired[(integration_id, entity)] = tick
        log.info("scheduler.tick_fired", integration_id=str(integration_id), entity=entity,
                 tick=tick.isoformat(), job_id=job_id, coalesced=job_id is None,
                 catchup=catchup, run_at=run_at.isoformat())
        return FiredTick(integration_id, entity, tick, job_id)

    async def prune(self) -> int:
        """Forget fired ticks older than the retention period (keeping each schedule's last)."""
        status = await self.pool.execute(_Q["prune_ticks"], self.retention_seconds)
        return int(status.split()[-1])

    # --- leadership --------------------------------------------------------------------

    async def lead(self) -> None:
        """Fire due ticks every poll, for as long as the caller holds leadership (``syncd
        run``'s :class:`~daemon.leader.Leadership` cancels this when it is lost), until
        :meth:`stop`. A failing pass is logged and tried again next poll."""
        loop = asyncio.get_running_loop()
        last_prune = loop.time()
        while not self._stop.is_set():
            try:
                await self.fire_due()
                if loop.time() - last_prune > 600:
                    last_prune = loop.time()
                    await self.prune()
            except Exception as exc:  # the loop must outlive any one failure
                log.warning("scheduler.pass_failed", error=f"{type(exc).__name__}: {exc}"[:500])
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), timeout=self.poll_seconds)

    async def run(self) -> None:
        """Try for leadership every poll; while leader, fire due ticks. Until :meth:`stop`."""
        conn: asyncpg.Connection | None = None
        last_prune = 0.0
        loop = asyncio.get_running_loop()
        try:
            while not self._stop.is_set():
                try:
                    if conn is None or conn.is_closed():
                        conn = await self.pool.acquire()
                    if not self.is_leader:
                        self.is_leader = bool(await conn.fetchval(_Q["try_leader"], LEADER_KEY))
                        if self.is_leader:
                            log.info("scheduler.leader_acquired")
                    else:
                        await conn.fetchval("SELECT 1")
                    if self.is_leader:
                        await self.fire_due()
                        if loop.time() - last_prune > 600:
                            last_prune = loop.time()
                            await self.prune()
                except _DB_ERRORS as exc:
                    if self.is_leader:
                        log.warning("scheduler.leader_lost", error=str(exc)[:500])
                    self.is_leader = False
                    if conn is not None:
                        with contextlib.suppress(Exception):
                            await self.pool.release(conn, timeout=1)
                        conn = None
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), timeout=self.poll_seconds)
        finally:
            if conn is not None:
                if self.is_leader:
                    with contextlib.suppress(*_DB_ERRORS):
                        await conn.fetchval(_Q["resign"], LEADER_KEY)
                    log.info("scheduler.leader_resigned")
                self.is_leader = False
                with contextlib.suppress(Exception):
                    await self.pool.release(conn)
