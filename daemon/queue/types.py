"""Values that cross the queue's boundary: jobs, handler results, the handler's context."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Final, Protocol

import asyncpg

from daemon.errors import SyncdError

__all__ = [
    "LANES",
    "Job",
    "JobContext",
    "JobHandler",
    "JobResult",
    "LeaseLost",
    "Outcome",
]

#: Lanes from highest to lowest priority.
LANES: Final[tuple[str, ...]] = ("CRITICAL", "HIGH", "NORMAL", "LOW")


@dataclass(frozen=True, slots=True)
class Job:
    """A claimed job, as its handler sees it."""

    id: int
    venue_id: uuid.UUID
    provider: str
    entity_type: str
    operation: str
    payload: Mapping[str, Any]
    lane: str
    attempts: int
    max_attempts: int
    lease_token: uuid.UUID
    correlation_id: str | None
    entity_id: str | None

    @classmethod
    def from_record(cls, row: Mapping[str, Any]) -> Job:
        """A job from a ``sync_queue`` row returned by the claim."""
        return cls(
            id=row["id"],
            venue_id=row["venue_id"],
            provider=row["provider"],
            entity_type=row["entity_type"],
            operation=row["operation"],
            payload=row["payload"] or {},
            lane=row["lane"],
            attempts=row["attempts"],
            max_attempts=row["max_attempts"],
            lease_token=row["lease_token"],
            correlation_id=row["correlation_id"],
            entity_id=row["entity_id"],
        )


class Outcome(StrEnum):
    """How a run ended, as the handler classifies it."""

    COMPLETED = "completed"
    #: Transient failure: retried with backoff until max_attempts, then dead-lettered.
    RETRY = "retry"
    #: Permanent failure: not retried.
    FAILED = "failed"
    #: Credentials rejected: not retried (status failed, error_kind auth).
    AUTH = "auth"


@dataclass(frozen=True, slots=True)
class JobResult:
    """What a handler returns."""

    outcome: Outcome
    error: str | None = None
    #: Seconds the provider asked us to wait (Retry-After); the backoff never goes below it.
    retry_after: float | None = None


class LeaseLost(SyncdError):
    """This worker no longer holds the job's lease: another worker may be running it."""


class JobContext(Protocol):
    """What a handler gets besides the :class:`Job`."""

    pool: asyncpg.Pool

    async def assert_lease(self, conn: asyncpg.Connection) -> None:
        """Inside the handler's own transaction: lock the job row and raise :class:`LeaseLost`
        unless this worker still holds the lease (the lease is extended while it does).

        Fencing: a worker whose lease was taken over cannot commit results.
        """
        ...

    async def complete(self, conn: asyncpg.Connection) -> None:
        """Inside the handler's own transaction: mark the job completed, fenced like
        :meth:`assert_lease` (raises :class:`LeaseLost` when the lease is gone).

        The completion commits with the handler's results or not at all, so a worker that
        dies after that commit but before it could report leaves nothing to redo: the job
        is never reclaimed and run a second time. Call it last: once it commits, the job's
        integration is free for the next job. Whatever the handler then returns, the
        worker's own recording finds the job no longer running and changes nothing.
        """
        ...

    @property
    def cancelled(self) -> bool:
        """True once the lease was lost or the shutdown grace period ran out."""
        ...


JobHandler = Callable[[Job, JobContext], Awaitable[JobResult]]
