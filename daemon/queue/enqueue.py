"""Putting jobs on the queue: used by the scheduler, webhooks, the CLI and recovery."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from daemon.queue.types import LANES
from daemon.sql import queries

__all__ = ["DEFAULT_MAX_ATTEMPTS", "DEFAULT_TTL_SECONDS", "NewJob", "enqueue", "enqueue_many"]

_Q = queries("queue.sql")

DEFAULT_MAX_ATTEMPTS = 10
DEFAULT_TTL_SECONDS = 7 * 86400.0
_OPERATIONS = frozenset({"create", "update", "delete", "sync", "reconcile"})

Executor = Any  # an asyncpg Connection or Pool (asyncpg ships no type hints)


@dataclass(frozen=True, slots=True)
class NewJob:
    """One job for :func:`enqueue_many`."""

    venue_id: uuid.UUID
    provider: str
    entity_type: str
    operation: str = "sync"
    lane: str = "NORMAL"
    payload: Mapping[str, Any] = field(default_factory=dict)
    idempotency_key: str | None = None
    correlation_id: str | None = None
    run_at: datetime | None = None
    max_attempts: int | None = None
    entity_id: str | None = None
    expires_at: datetime | None = None


def _check(job: NewJob) -> None:
    if job.lane not in LANES:
        raise ValueError(f"unknown lane {job.lane!r}: expected one of {', '.join(LANES)}")
    if job.operation not in _OPERATIONS:
        raise ValueError(
            f"unknown operation {job.operation!r}: expected one of {', '.join(sorted(_OPERATIONS))}"
        )
    if not job.provider or not job.entity_type:
        raise ValueError("provider and entity_type must not be empty")
    if job.max_attempts is not None and job.max_attempts < 1:
        raise ValueError("max_attempts must be at least 1")
    for name in ("run_at", "expires_at"):
        value = getattr(job, name)
        if value is not None and value.tzinfo is None:
            raise ValueError(f"{name} must be timezone-aware")


async def enqueue(
    conn_or_pool: Executor,
    *,
    venue_id: uuid.UUID,
    provider: str,
    entity_type: str,
    operation: str = "sync",
    lane: str = "NORMAL",
    payload: Mapping[str, Any] | None = None,
    idempotency_key: str | None = None,
    correlation_id: str | None = None,
    run_at: datetime | None = None,
    max_attempts: int | None = None,
    entity_id: str | None = None,
    expires_at: datetime | None = None,
    ttl_seconds: float = DEFAULT_TTL_SECONDS,
) -> int | None:
    """Add one job; its id, or None when it was deduplicated (same idempotency key) or
    coalesced into a pending sync of the same integration and entity.

    A coalesced job raises its pending twin to the higher lane and the earlier due time.
    Inside a caller's transaction when given a connection in one.
    """
    job = NewJob(
        venue_id=venue_id, provider=provider, entity_type=entity_type, operation=operation,
        lane=lane, payload=dict(payload or {}), idempotency_key=idempotency_key,
        correlation_id=correlation_id, run_at=run_at, max_attempts=max_attempts,
        entity_id=entity_id, expires_at=expires_at,
    )
    _check(job)
    job_id: int | None = await conn_or_pool.fetchval(
        _Q["enqueue"], venue_id, provider, operation, entity_type, entity_id, job.payload,
        idempotency_key, lane, run_at, max_attempts or DEFAULT_MAX_ATTEMPTS, correlation_id,
        expires_at, ttl_seconds,
    )
    if job_id is None and operation in ("sync", "reconcile"):
        await conn_or_pool.execute(
            _Q["coalesce_into_pending"], venue_id, provider, entity_type, operation, entity_id,
            lane, run_at,
        )
    return job_id


async def enqueue_many(
    conn_or_pool: Executor, jobs: Iterable[NewJob], *, ttl_seconds: float = DEFAULT_TTL_SECONDS
) -> list[int]:
    """Add many jobs in one statement; the ids of those inserted (duplicates are skipped).

    Every job is checked before anything is written: one bad job rejects the whole batch.
    """
    batch: Sequence[NewJob] = list(jobs)
    for job in batch:
        _check(job)
    if not batch:
        return []
    rows = await conn_or_pool.fetch(
        _Q["enqueue_many"],
        [j.venue_id for j in batch],
        [j.provider for j in batch],
        [j.operation for j in batch],
        [j.entity_type for j in batch],
        [j.entity_id for j in batch],
        [json.dumps(dict(j.payload)) for j in batch],
        [j.idempotency_key for j in batch],
        [j.lane for j in batch],
        [j.run_at for j in batch],
        [j.max_attempts or DEFAULT_MAX_ATTEMPTS for j in batch],
        [j.correlation_id for j in batch],
        [j.expires_at for j in batch],
        ttl_seconds,
    )
    return [r["id"] for r in rows]
