"""Leadership among ``syncd run`` replicas: a Postgres session advisory lock held on a
connection of its own.

One replica at a time holds the lock and runs the leader's duties (config reconcile, cron
scheduling, the health monitor). The lock lives as long as the session that took it, so:

- the leader's process dies (``kill -9``, a crashed node): Postgres ends the session and
  frees the lock; another replica takes it on its next try, within
  ``SYNCD_LEADER_RETRY_SECONDS``;
- the leader's connection drops (Postgres restarted, the backend terminated, the network
  cut): the leader learns it from the connection's termination, or from a failed check
  every ``SYNCD_LEADER_CHECK_SECONDS``, and cancels its duties at once, because the lock
  may already be someone else's;
- the leader shuts down: duties are cancelled, then the lock is released, so a successor
  does not wait for anything.

The connection is not from the pool: a pool recycles connections, and a lock held on one
the pool handed to somebody else would be released by a stranger or never at all.

Leadership is a matter of efficiency, not correctness: each cron tick is recorded once
under a primary key, and a config apply is one transaction, so the seconds in which a lost
leader has not noticed yet cannot make anything run twice.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Coroutine
from typing import Any

import asyncpg

from daemon.db import connect
from daemon.errors import DatabaseUnavailable
from daemon.logs import get_logger
from daemon.scheduler.scheduler import LEADER_KEY

__all__ = ["LEADER_KEY", "Leadership"]

log = get_logger("syncd.leader")


Duties = Callable[[], Coroutine[Any, Any, None]]
Listener = Callable[[bool], None]


class Leadership:
    """Contends for leadership until stopped; while leading, runs ``duties``."""

    def __init__(self, dsn: str, duties: Duties, *, key: int = LEADER_KEY,
                 retry_seconds: float = 2.0, check_seconds: float = 1.0,
                 connect_timeout: float = 10.0, name: str = "") -> None:
        self.dsn = dsn
        self.duties = duties
        self.key = key
        self.retry_seconds = retry_seconds
        self.check_seconds = check_seconds
        self.connect_timeout = connect_timeout
        self.name = name
        self.is_leader = False
        #: Times this replica became leader.
        self.terms = 0
        self._stop = asyncio.Event()
        self._listeners: list[Listener] = []
        self._conn: asyncpg.Connection | None = None

    def on_change(self, listener: Listener) -> None:
        """Call ``listener(is_leader)`` whenever leadership is won or lost."""
        self._listeners.append(listener)

    def stop(self) -> None:
        """End the duties at once and resign (:meth:`run` returns)."""
        self._stop.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def _set(self, leading: bool) -> None:
        if leading == self.is_leader:
            return
        self.is_leader = leading
        if leading:
            self.terms += 1
        for listener in self._listeners:
            try:
                listener(leading)
            except Exception as exc:  # a listener's bug must not cost leadership
                log.error("leader.listener_failed", error=f"{type(exc).__name__}: {exc}")

    async def _wait(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stop.wait(), timeout=seconds)

    async def run(self) -> None:
        """Contend, lead, lose, contend again, until :meth:`stop`."""
        try:
            while not self._stop.is_set():
                try:
                    conn = await connect(self.dsn, timeout=self.connect_timeout)
                except DatabaseUnavailable as exc:
                    log.warning("leader.connect_failed", error=str(exc))
                    await self._wait(self.retry_seconds)
                    continue
                self._conn = conn
                try:
                    await self._contend(conn)
                finally:
                    self._conn = None
                    await self._close(conn)
                await self._wait(self.retry_seconds)
        finally:
            self._set(False)

    async def _close(self, conn: asyncpg.Connection) -> None:
        """Resign (when leading and the connection still works) and close."""
        if self.is_leader and not conn.is_closed():
            with contextlib.suppress(Exception):
                await asyncio.wait_for(conn.fetchval("SELECT pg_advisory_unlock($1)",
                                                     self.key), timeout=2.0)
            log.info("leader.resigned", replica=self.name)
        self._set(False)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(conn.close(), timeout=2.0)
        if not conn.is_closed():
            conn.terminate()

    async def _contend(self, conn: asyncpg.Connection) -> None:
        """On one connection: try for the lock until won, then lead until it is lost."""
        lost = asyncio.Event()
        conn.add_termination_listener(lambda _c: lost.set())
        while not self._stop.is_set() and not lost.is_set():
            try:
                won = await conn.fetchval("SELECT pg_try_advisory_lock($1)", self.key,
                                          timeout=self.check_seconds * 5)
            except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) \
                    as exc:
                log.warning("leader.try_failed", error=f"{type(exc).__name__}: {exc}")
                return
            if won:
                break
            await self._wait(self.retry_seconds)
        else:
            return
        self._set(True)
        log.info("leader.acquired", replica=self.name, term=self.terms)
        duties = asyncio.create_task(self.duties(), name="leader.duties")
        checker = asyncio.create_task(self._check(conn, lost), name="leader.check")
        stop = asyncio.create_task(self._stop.wait(), name="leader.stop")
        try:
            await asyncio.wait({duties, checker, stop}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (duties, checker, stop):
                task.cancel()
            for task in (duties, checker, stop):
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        failure = (duties.exception() if duties.done() and not duties.cancelled()
                   else None)
        if failure is not None:
            log.error("leader.duties_failed", error=f"{type(failure).__name__}: {failure}")
        if lost.is_set() or conn.is_closed():
            log.warning("leader.lost", replica=self.name,
                        reason="the connection holding leadership was lost")
            self._set(False)

    async def _check(self, conn: asyncpg.Connection, lost: asyncio.Event) -> None:
        """Return as soon as the connection is gone or stops answering."""
        while not lost.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(lost.wait(), timeout=self.check_seconds)
            if lost.is_set():
                return
            try:
                await conn.fetchval("SELECT 1", timeout=self.check_seconds * 2)
            except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError):
                lost.set()
                with contextlib.suppress(Exception):
                    conn.terminate()
                return
