"""The :class:`~daemon.queue.types.JobContext` a running job's handler gets."""

from __future__ import annotations

import asyncpg

from daemon.queue.types import Job, LeaseLost
from daemon.sql import queries

__all__ = ["RunContext"]

_Q = queries("queue.sql")


class RunContext:
    """Lease checks for one run of one job."""

    __slots__ = ("_cancelled", "_lost", "completing", "job", "lease_seconds", "pool")

    def __init__(self, pool: asyncpg.Pool, job: Job, lease_seconds: float) -> None:
        self.pool = pool
        self.job = job
        self.lease_seconds = lease_seconds
        self._cancelled = False
        self._lost = False
        #: :meth:`complete` ran (its transaction may still commit or roll back).
        self.completing = False

    async def assert_lease(self, conn: asyncpg.Connection) -> None:
        """Lock the job row in ``conn``'s transaction and check the lease is still ours.

        The lease is extended while the row is locked, so a reclaim cannot take the job
        before this transaction ends; if the lease is gone, :class:`LeaseLost` is raised and
        the caller's transaction must roll back.
        """
        held = await conn.fetchval(
            _Q["assert_lease"], self.job.id, self.job.lease_token, self.lease_seconds
        )
        if held is None:
            self.lose()
            raise LeaseLost(f"job {self.job.id}: lease lost")

    async def complete(self, conn: asyncpg.Connection) -> None:
        """Mark the job completed in ``conn``'s transaction (see ``JobContext.complete``)."""
        done = await conn.fetchval(_Q["complete_in_transaction"], self.job.id,
                                   self.job.lease_token)
        if done is None:
            self.lose()
            raise LeaseLost(f"job {self.job.id}: lease lost")
        self.completing = True

    @property
    def cancelled(self) -> bool:
        return self._cancelled

    @property
    def lost(self) -> bool:
        """True once this worker knows the lease is no longer its own."""
        return self._lost

    def cancel(self) -> None:
        """Shutdown grace ran out."""
        self._cancelled = True

    def lose(self) -> None:
        """The lease was lost: nothing this run produces may be recorded."""
        self._lost = True
        self._cancelled = True
