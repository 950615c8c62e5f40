"""Durable webhook storage with group commit.

Each request hands its verified delivery to :meth:`WebhookStore.store` and waits. One writer
task takes every delivery waiting at that moment (up to ``batch_size``) and stores them with
one statement, one round trip, one commit: an ``INSERT ... ON CONFLICT DO NOTHING`` whose
trigger (migration 0006) queues, in the same transaction, the processing job of each provider
that got a new event. Only after that commit does any of those requests learn its outcome,
so nothing is acknowledged before it is on disk, and a burst of deliveries costs a few
commits rather than one each.

A batch that Postgres refuses as a whole for one bad value (a JSON document ``jsonb`` cannot
hold, say) is retried one delivery per transaction, so one bad delivery fails alone.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

import asyncpg

from daemon.errors import SyncdError
from daemon.http.metrics import COMMIT_DELIVERIES
from daemon.logs import get_logger
from daemon.sql import queries

__all__ = [
    "PROCESSING_ENTITY",
    "PROCESSING_VENUE",
    "Delivery",
    "StoreOverloaded",
    "StoreRejected",
    "StoreUnavailable",
    "WebhookStore",
]

log = get_logger("syncd.http")
_Q = queries("webhooks.sql")

#: The processing job of a provider's webhook events is queued under this venue id (events
#: are matched to their venues when processed) and this entity type, on the CRITICAL lane,
#: by the trigger that stores them (migration 0006). A pending one absorbs any later one
#: (pending syncs of one key coalesce), so a burst queues one job, which drains every event
#: stored before it ran.
PROCESSING_VENUE = uuid.UUID(int=0)
PROCESSING_ENTITY = "webhooks"

Outcome = Literal["stored", "duplicate"]

#: Seconds without deliveries after which the writer gives its connection back to the pool.
IDLE_SECONDS = 1.0


class StoreRejected(SyncdError):
    """Postgres refused this delivery's values; the delivery is bad, not the database."""


class StoreUnavailable(SyncdError):
    """The delivery could not be stored now (database unreachable); the sender should retry."""


class StoreOverloaded(StoreUnavailable):
    """Too many deliveries are waiting for a commit."""


@dataclass(frozen=True, slots=True)
class Delivery:
    """A verified delivery, ready to store. ``payload_json`` is the body as a JSON document."""

    provider: str
    external_id: str
    venue_id: uuid.UUID | None
    headers_json: str
    payload_json: str
    body: bytes
    content_type: str
    received_at: datetime


@dataclass(slots=True)
class _Waiting:
    delivery: Delivery
    future: asyncio.Future[Outcome] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future())


def _fail(waiting: _Waiting, error: Exception) -> None:
    if not waiting.future.done():
        waiting.future.set_exception(error)


class WebhookStore:
    """Stores deliveries in group commits by one writer task.

    One writer is enough: storing alone (no HTTP) it commits several times the deliveries
    per second the HTTP layer verifies on two cores, and a second one measured no faster.
    Replicas write concurrently; rows go in (provider, event id) order, so two batches
    holding the same events lock them in one order and never deadlock.

    The writer keeps one pooled connection for as long as it works (the pool has one fewer
    for everything else): a batch is then exactly one round trip, its statement prepared
    once on that connection, where taking a connection from the pool for each batch cost a
    second round trip (the reset the pool runs on every release) and the acquiring. After
    :data:`IDLE_SECONDS` without deliveries, and on :meth:`close`, it gives the connection
    back. A connection that fails goes back to the pool (which closes it if it is broken)
    and the next batch takes another.
    """

    def __init__(self, pool: asyncpg.Pool, *, batch_size: int = 256,
                 max_pending: int = 4096) -> None:
        self.pool = pool
        self.batch_size = batch_size
        self.max_pending = max_pending
        self._waiting: list[_Waiting] = []
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._closed = False
        self._conn: asyncpg.Connection | None = None

    async def store(self, delivery: Delivery) -> Outcome:
        """Store ``delivery``; returns once committed: ``stored``, or ``duplicate`` when the
        provider's event was stored before. Raises :class:`StoreRejected` or
        :class:`StoreUnavailable`."""
        if self._closed:
            raise StoreUnavailable("the server is shutting down")
        if len(self._waiting) >= self.max_pending:
            raise StoreOverloaded("too many deliveries are waiting to be stored")
        if not self._tasks:
            loop = asyncio.get_running_loop()
            self._tasks = [loop.create_task(self._run(), name="webhook-writer")]
        waiting = _Waiting(delivery)
        self._waiting.append(waiting)
        self._wake.set()
        # Not shielded: a request cancelled (its client went away) cancels its future, and
        # the writer, which stores the delivery all the same, leaves a done future alone.
        return await waiting.future

    async def close(self) -> None:
        """Store what is waiting, then stop the writer."""
        self._closed = True
        self._wake.set()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        await self._give_back()

    async def _connection(self) -> asyncpg.Connection:
        if self._conn is None:
            self._conn = await self.pool.acquire()
        return self._conn

    async def _give_back(self) -> None:
        """Return the writer's connection to the pool (which resets it, or closes it when
        it is broken); the next batch takes one again."""
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                await self.pool.release(conn)

    async def _run(self) -> None:
        while True:
            if not self._waiting:
                if self._closed:
                    return
                self._wake.clear()
                try:
                    await asyncio.wait_for(self._wake.wait(), timeout=IDLE_SECONDS)
                except TimeoutError:
                    await self._give_back()  # idle: the pool may need it (or be closing)
                    await self._wake.wait()
                continue
            batch = self._waiting[: self.batch_size]
            del self._waiting[: len(batch)]
            try:
                await self._commit(batch)
            except Exception as exc:  # the writer must outlive any one batch
                log.error("webhook.store_failed", error=type(exc).__name__, batch=len(batch))
                for w in batch:
                    _fail(w, StoreUnavailable("the event could not be stored"))

    async def _commit(self, batch: Sequence[_Waiting]) -> None:
        try:
            outcomes = await self._insert([w.delivery for w in batch])
        except (asyncpg.DataError, asyncpg.IntegrityConstraintViolationError):
            await self._one_by_one(batch)
            return
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            log.error("webhook.store_failed", error=type(exc).__name__, batch=len(batch))
            for w in batch:
                _fail(w, StoreUnavailable("the event could not be stored"))
            return
        COMMIT_DELIVERIES.observe(len(batch))
        for w, outcome in zip(batch, outcomes, strict=True):
            if not w.future.done():
                w.future.set_result(outcome)

    async def _one_by_one(self, batch: Sequence[_Waiting]) -> None:
        for w in batch:
            try:
                (outcome,) = await self._insert([w.delivery])
            except (asyncpg.DataError, asyncpg.IntegrityConstraintViolationError) as exc:
                log.warning("webhook.rejected_by_database", provider=w.delivery.provider,
                            error=type(exc).__name__)
                _fail(w, StoreRejected("the event cannot be stored as sent"))
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                log.error("webhook.store_failed", error=type(exc).__name__, batch=1)
                _fail(w, StoreUnavailable("the event could not be stored"))
            else:
                if not w.future.done():
                    w.future.set_result(outcome)

    async def _insert(self, deliveries: Sequence[Delivery]) -> list[Outcome]:
        conn = await self._connection()
        try:
            rows = await conn.fetch(
                _Q["store_deliveries"],
                [d.venue_id for d in deliveries],
                [d.provider for d in deliveries],
                [d.external_id for d in deliveries],
                [d.headers_json for d in deliveries],
                [d.payload_json for d in deliveries],
                [d.body for d in deliveries],
                [d.content_type for d in deliveries],
                [d.received_at for d in deliveries],
            )
        except (asyncpg.DataError, asyncpg.IntegrityConstraintViolationError):
            raise  # a bad value: the statement failed alone, the connection is fine
        except BaseException:
            await self._give_back()
            raise
        new = {(r["provider"], r["external_id"]) for r in rows}
        outcomes: list[Outcome] = []
        for d in deliveries:
            key = (d.provider, d.external_id)
            if key in new:
                new.discard(key)  # a repeat within the batch is a duplicate of the first
                outcomes.append("stored")
            else:
                outcomes.append("duplicate")
        return outcomes
