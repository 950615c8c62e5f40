"""The worker: claims jobs by lane weight, runs the handler, renews leases, records results.

One :class:`Worker` per process runs at most ``concurrency`` jobs at once: a claim first
reserves the slots it asks for, so claim loops running side by side never count the same free
slot twice. It claims in small batches when it has free slots, woken by NOTIFY on
``syncd_queue`` or by its own poll timer, renews every running job's lease in one statement
per heartbeat, and writes results in batches, each fenced by the job's lease token. A job
whose lease is lost is cancelled and its result discarded.

The worker keeps one connection of its own, the control connection: it LISTENs there and
renews leases there, so jobs that use up the pool never hold up a heartbeat. When that
connection is lost (Postgres restarted, the backend was terminated) the worker logs
``worker.listen_lost``, polls meanwhile, connects again with backoff and logs
``worker.listen_restored``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime

import asyncpg

from daemon.db import PoolTimeout
from daemon.logs import get_logger
from daemon.queue import metrics
from daemon.queue.backoff import retry_delay
from daemon.queue.claim import claim_jobs
from daemon.queue.lanes import LaneScheduler
from daemon.queue.maintenance import (
    expire_pending,
    prune_finished,
    reclaim_expired,
    refresh_depth,
)
from daemon.queue.types import LANES, Job, JobHandler, JobResult, LeaseLost, Outcome
from daemon.sql import queries
from daemon.worker.config import WorkerConfig
from daemon.worker.context import RunContext

__all__ = ["Worker", "default_owner"]

log = get_logger("syncd.worker")
_Q = queries("queue.sql")
_MAX_ERROR = 2000
_CHANNEL = "syncd_queue"
#: Longest wait between two attempts to get the control connection back.
_RECONNECT_CAP = 30.0


def default_owner() -> str:
    """``host:pid:random``: names this worker in leases and ``syncd queue``."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


@dataclass(slots=True)
class _Running:
    job: Job
    ctx: RunContext
    task: asyncio.Task[None] | None = None
    started: float = field(default_factory=time.monotonic)


@dataclass(frozen=True, slots=True)
class _Finish:
    job: Job
    outcome: Outcome
    error: str | None
    delay: float


def _describe(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}".strip()
    return text[:_MAX_ERROR]


class Worker:
    """Runs jobs from the queue until :meth:`stop` is called, then drains."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        handler: JobHandler,
        config: WorkerConfig | None = None,
        *,
        owner: str | None = None,
        maintenance: bool = True,
    ) -> None:
        self.pool = pool
        self.handler = handler
        self.config = config or WorkerConfig()
        self.owner = owner or default_owner()
        self.maintenance = maintenance
        self.lanes = LaneScheduler(self.config.lane_weights)
        self._running: dict[int, _Running] = {}
        self._finishes: asyncio.Queue[_Finish] = asyncio.Queue()
        self._wake = asyncio.Event()
        self._stopping = asyncio.Event()
        self._pump_done = asyncio.Event()
        #: Job tasks whose handler has not returned yet (the hard limit counts these).
        self._alive = 0
        #: Slots promised to claims in flight.
        self._reserved = 0
        #: Jobs whose handler returned and whose result is not yet recorded: their rows
        #: still hold a lease, so their slots are not free until the record commits.
        self._unrecorded = 0
        self._control: asyncpg.Connection | None = None
        self.claimed_total = 0

    # --- lifecycle ---------------------------------------------------------------------

    def stop(self) -> None:
        """Stop claiming; :meth:`run` lets running jobs finish within the grace period."""
        self._stopping.set()
        self._wake.set()

    async def run(self) -> None:
        """Work until :meth:`stop`; returns once every job has finished or been handed back."""
        log.info("worker.started", owner=self.owner, concurrency=self.config.concurrency)
        first = await self._connect_control()
        # Two pumps: one talks to Postgres while the other waits for its commit to flush.
        pumps = [asyncio.create_task(self._pump(), name=f"worker.pump{i}")
                 for i in range(self.config.pumps)]
        helpers = [asyncio.create_task(self._control_loop(first), name="worker.listen"),
                   asyncio.create_task(self._heartbeat_loop(), name="worker.heartbeat")]
        maint: asyncio.Task[None] | None = None
        if self.maintenance:
            maint = asyncio.create_task(self._maintenance_loop(), name="worker.maint")
            helpers.append(maint)
        try:
            await self._stopping.wait()
            if maint is not None:
                # Housekeeping is left to the other replicas while this one drains: its own
                # reclaim could take a job of this worker whose handler was just cancelled,
                # racing the release that hands it back.
                maint.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await maint
            await self._drain()
        finally:
            for task in helpers:
                task.cancel()
            for task in helpers:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            self._pump_done.set()
            self._wake.set()
            for pump in pumps:
                with contextlib.suppress(asyncio.CancelledError):
                    await pump
            log.info("worker.stopped", owner=self.owner, claimed=self.claimed_total)

    def _on_notify(self, *_: object) -> None:
        self._wake.set()

    # --- the control connection (LISTEN, heartbeats) ------------------------------------

    async def _connect_control(self) -> asyncpg.Connection:
        conn: asyncpg.Connection = await self.pool.acquire()
        try:
            await conn.add_listener(_CHANNEL, self._on_notify)
        except BaseException:
            await self.pool.release(conn)
            raise
        return conn

    async def _release_control(self, conn: asyncpg.Connection) -> None:
        # A connection the server closed is already back in the pool: both calls are then
        # no-ops or fail harmlessly.
        with contextlib.suppress(Exception):
            await conn.remove_listener(_CHANNEL, self._on_notify)
        with contextlib.suppress(Exception):
            await self.pool.release(conn)

    async def _control_loop(self, conn: asyncpg.Connection) -> None:
        """Hold the control connection; when it is lost, get another (with backoff)."""
        lost_at: float | None = None
        delay = 0.0
        try:
            while True:
                closed = asyncio.Event()
                conn.add_termination_listener(lambda _c, ev=closed: ev.set())
                self._control = conn
                if lost_at is not None:
                    log.info("worker.listen_restored", owner=self.owner,
                             after_s=round(time.monotonic() - lost_at, 3))
                    lost_at = None
                    self._wake.set()  # jobs may have been added unannounced meanwhile
                await closed.wait()
                self._control = None
                await self._release_control(conn)
                lost_at = time.monotonic()
                log.warning("worker.listen_lost", owner=self.owner,
                            poll_s=self.config.poll_seconds)
                self._wake.set()
                delay = min(self.config.poll_seconds, 0.1)
                while True:
                    await asyncio.sleep(delay)
                    try:
                        conn = await self._connect_control()
                        break
                    except Exception as exc:  # the loop must outlive any one failure
                        delay = min(max(delay * 2, 0.1), _RECONNECT_CAP)
                        log.warning("worker.listen_retry", owner=self.owner,
                                    error=_describe(exc), retry_in_s=round(delay, 3))
        finally:
            if self._control is not None:
                self._control = None
                await self._release_control(conn)

    # --- claiming ----------------------------------------------------------------------

    async def _pump(self) -> None:
        """The one loop that talks to the queue for running work: records finished jobs and
        claims new ones, both in one round trip and one commit when it can."""
        # Claim when enough slots are free to make a round trip worth it (or nothing runs).
        threshold = max(1, min(self.config.batch_size, self.config.concurrency) // 2)
        while True:
            # Cleared before looking, so a wake-up that arrives meanwhile is not lost.
            self._wake.clear()
            batch: list[_Finish] = []
            while not self._finishes.empty():
                batch.append(self._finishes.get_nowait())
            if self._pump_done.is_set() and not batch:
                return
            # Slots held by running handlers and promised to claims in flight (the other
            # pump's) are not free: the limit is hard.
            # A finished job's slot is free only to the claim that records its result in the
            # same statement; to any other it is taken until that record commits.
            waiting = self._unrecorded - len(batch)
            free = self.config.concurrency - self._alive - self._reserved - waiting
            idle = self._alive == 0 and self._reserved == 0 and waiting == 0
            claiming = (not self._stopping.is_set() and free > 0
                        and (free >= threshold or idle))
            want = min(free, self.config.batch_size) if claiming else 0
            if not batch and not want:
                await self._sleep(self.config.poll_seconds)
                continue
            self._reserved += want
            jobs: list[Job] = []
            try:
                jobs = await self._exchange(batch, want)
            except Exception as exc:  # the loop must outlive any one failure
                # Unrecorded results: the leases run out and the jobs are reclaimed and run
                # again (at least once, never lost).
                log.error("worker.exchange_failed", error=_describe(exc),
                          unrecorded=[f.job.id for f in batch])
                await self._sleep(self.config.poll_seconds)
            finally:
                for f in batch:
                    self._running.pop(f.job.id, None)
                    self._unrecorded -= 1
                    self._finishes.task_done()
                for job in jobs:
                    self._start(job)
                self._reserved -= want
            if want and len(jobs) < want:
                await self._sleep(await self._idle_timeout())

    async def _sleep(self, timeout: float) -> None:
        """Wait for a wake-up (NOTIFY, a finished job, stop) or ``timeout`` seconds."""
        if self._wake.is_set():
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), timeout=max(timeout, 0.0))

    async def _idle_timeout(self) -> float:
        try:
            due = await self.pool.fetchval(_Q["next_due"], list(LANES))
        except Exception:  # only a hint: fall back to the poll interval
            return self.config.poll_seconds
        if due is None:
            return self.config.poll_seconds
        wait = (due - datetime.now(UTC)).total_seconds()
        # A due job that could not be claimed waits on a running job of its integration,
        # whose finish wakes us; otherwise sleep until the next job falls due.
        if wait <= 0:
            return self.config.poll_seconds
        return float(min(wait + 0.01, self.config.poll_seconds))

    async def _exchange(self, batch: list[_Finish], want: int) -> list[Job]:
        """Record ``batch`` and claim up to ``want`` jobs."""
        others = [f for f in batch if f.outcome is not Outcome.COMPLETED]
        if others:
            await self._record_failures(others)
        completed = [(f.job.id, f.job.lease_token) for f in batch
                     if f.outcome is Outcome.COMPLETED]
        jobs = await claim_jobs(self.pool, owner=self.owner, limit=want, lanes=self.lanes,
                                lease_seconds=self.config.lease_seconds, completed=completed)
        self.claimed_total += len(jobs)
        return jobs

    # --- running -----------------------------------------------------------------------

    def _start(self, job: Job) -> None:
        entry = _Running(job=job, ctx=RunContext(self.pool, job, self.config.lease_seconds))
        self._running[job.id] = entry
        self._alive += 1
        entry.task = asyncio.create_task(self._run_job(entry), name=f"job.{job.id}")
        entry.task.add_done_callback(self._job_done)

    def _job_done(self, _task: asyncio.Task[None]) -> None:
        self._alive -= 1
        self._wake.set()

    async def _run_job(self, entry: _Running) -> None:
        job = entry.job
        try:
            result = await self.handler(job, entry.ctx)
            if not isinstance(result, JobResult):
                raise TypeError(f"handler returned {type(result).__name__}, not JobResult")
        except asyncio.CancelledError:
            # Lease lost or grace period over: the caller hands the job back (or not: a
            # lost lease is someone else's now).
            raise
        except LeaseLost:
            log.warning("job.lease_lost", job_id=job.id, owner=self.owner)
            self._running.pop(job.id, None)
            self._wake.set()
            return
        except Exception as exc:
            result = JobResult(Outcome.RETRY, error=_describe(exc))
        if entry.ctx.lost:
            self._running.pop(job.id, None)
            self._wake.set()
            return
        elapsed = time.monotonic() - entry.started
        metrics.observe_run(job.lane, result.outcome.value, elapsed)
        delay = 0.0
        if result.outcome is Outcome.RETRY:
            delay = retry_delay(
                job.attempts, base=self.config.retry_base_seconds,
                cap=self.config.retry_cap_seconds, retry_after=result.retry_after,
            )
        error = result.error[:_MAX_ERROR] if result.error else None
        if result.outcome is not Outcome.COMPLETED:
            log.info("job.failed", job_id=job.id, outcome=result.outcome.value,
                     attempts=job.attempts, error=error, retry_in_s=round(delay, 3))
        self._unrecorded += 1
        self._finishes.put_nowait(_Finish(job, result.outcome, error, delay))
        self._wake.set()

    # --- recording results -------------------------------------------------------------

    async def _record_failures(self, batch: list[_Finish]) -> None:
        failed = [f for f in batch if f.outcome in (Outcome.FAILED, Outcome.AUTH)]
        retry = [f for f in batch if f.outcome is Outcome.RETRY]
        async with self.pool.acquire() as conn, conn.transaction():
            if failed:
                await conn.execute(
                    _Q["fail_many"], [f.job.id for f in failed],
                    [f.job.lease_token for f in failed], [f.error or "" for f in failed],
                    ["auth" if f.outcome is Outcome.AUTH else "permanent" for f in failed],
                )
            if retry:
                rows = await conn.fetch(
                    _Q["retry_many"], [f.job.id for f in retry],
                    [f.job.lease_token for f in retry], [f.error or "" for f in retry],
                    [f.delay for f in retry],
                )
                for r in rows:
                    if r["status"] == "dead_letter":
                        log.warning("job.dead_letter", job_id=r["id"])

    # --- leases ------------------------------------------------------------------------

    async def _heartbeat_loop(self) -> None:
        while True:
            await asyncio.sleep(self.config.heartbeat_seconds)
            await self._heartbeat()

    async def _heartbeat(self) -> None:
        entries = [e for e in self._running.values() if not e.ctx.lost]
        if not entries:
            return
        # On the control connection, which jobs never take; through the pool only while
        # that connection is being restored.
        conn = self._control
        try:
            executor: asyncpg.Connection | asyncpg.Pool = (
                conn if conn is not None and not conn.is_closed() else self.pool)
            rows = await executor.fetch(
                _Q["heartbeat"], [e.job.id for e in entries], [e.job.lease_token for e in entries],
                self.config.lease_seconds,
            )
        except Exception as exc:  # the loop must outlive any one failure
            log.error("worker.heartbeat_failed", error=_describe(exc))
            return
        renewed = {r["id"] for r in rows}
        for e in entries:
            # A job that finished while the heartbeat ran is not "lost", nor is one its
            # handler completed in its own transaction.
            if e.job.id not in renewed and e.job.id in self._running and e.task is not None \
                    and not e.task.done() and not e.ctx.completing:
                log.warning("job.lease_lost", job_id=e.job.id, owner=self.owner)
                e.ctx.lose()
                e.task.cancel()
                self._running.pop(e.job.id, None)
                self._wake.set()

    # --- housekeeping ------------------------------------------------------------------

    async def _maintenance_loop(self) -> None:
        last_prune = 0.0
        while True:
            try:
                await reclaim_expired(self.pool)
                await expire_pending(self.pool)
                await refresh_depth(self.pool)
                if time.monotonic() - last_prune > self.config.prune_every_seconds:
                    last_prune = time.monotonic()
                    await prune_finished(self.pool, older_than_s=self.config.retention_seconds)
            except Exception as exc:  # the loop must outlive any one failure
                log.error("worker.maintenance_failed", error=_describe(exc))
            await asyncio.sleep(self.config.maintenance_seconds)

    # --- shutdown ----------------------------------------------------------------------

    async def _drain(self) -> None:
        tasks = [e.task for e in self._running.values() if e.task is not None]
        if tasks:
            log.info("worker.draining", running=len(tasks), grace_s=self.config.grace_seconds)
            await asyncio.wait(tasks, timeout=self.config.grace_seconds)
        await self._finishes.join()
        left = [e for e in self._running.values() if e.task is not None and not e.task.done()]
        if not left:
            return
        for e in left:
            e.ctx.cancel()
            assert e.task is not None
            e.task.cancel()
        await asyncio.wait([e.task for e in left if e.task is not None])
        await self._finishes.join()
        left = [e for e in left if e.job.id in self._running]
        if left:
            try:
                released = await self.pool.fetch(
                    _Q["release_many"], [e.job.id for e in left], [e.job.lease_token for e in left]
                )
                await self.pool.execute(_Q["notify"])
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, PoolTimeout) as exc:
                log.error("worker.release_failed", error=_describe(exc))
            else:
                log.info("worker.released", jobs=sorted(r["id"] for r in released))
            for e in left:
                self._running.pop(e.job.id, None)
