"""What operators see and do: queue overview and the dead-letter queue."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from daemon.queue.types import LANES
from daemon.sql import queries

__all__ = [
    "DeadJob",
    "Overview",
    "RunningJob",
    "dlq_list",
    "dlq_purge",
    "dlq_replay",
    "get_job",
    "overview",
]

_Q = queries("queue.sql")
_STATUSES = ("pending", "processing", "completed", "failed", "dead_letter")


@dataclass(frozen=True, slots=True)
class RunningJob:
    id: int
    venue_id: uuid.UUID
    provider: str
    entity_type: str
    operation: str
    lane: str
    attempts: int
    lease_owner: str | None
    started_at: datetime | None
    lease_expires_at: datetime | None


@dataclass(frozen=True, slots=True)
class Overview:
    """Depth by lane and status, oldest pending age per lane, running jobs."""

    depth: dict[str, dict[str, int]]
    oldest_pending_s: dict[str, float | None]
    due: dict[str, int]
    running: tuple[RunningJob, ...]

    def as_json(self) -> dict[str, Any]:
        return {
            "depth": self.depth,
            "oldest_pending_s": self.oldest_pending_s,
            "due": self.due,
            "running": [
                {
                    "id": r.id, "venue_id": str(r.venue_id), "provider": r.provider,
                    "entity_type": r.entity_type, "operation": r.operation, "lane": r.lane,
                    "attempts": r.attempts, "owner": r.lease_owner,
                    "started_at": r.started_at.isoformat() if r.started_at else None,
                    "lease_expires_at": (r.lease_expires_at.isoformat()
                                         if r.lease_expires_at else None),
                }
                for r in self.running
            ],
        }


async def overview(conn: asyncpg.Connection, *, running_limit: int = 100) -> Overview:
    depth = {lane: dict.fromkeys(_STATUSES, 0) for lane in LANES}
    for r in await conn.fetch(_Q["depth"]):
        depth[r["lane"]][r["status"]] = r["jobs"]
    oldest: dict[str, float | None] = dict.fromkeys(LANES)
    due = dict.fromkeys(LANES, 0)
    for r in await conn.fetch(_Q["pending_age"]):
        oldest[r["lane"]] = r["oldest_age_s"]
        due[r["lane"]] = r["due"]
    running = tuple(RunningJob(**dict(r)) for r in await conn.fetch(_Q["running"], running_limit))
    return Overview(depth=depth, oldest_pending_s=oldest, due=due, running=running)


@dataclass(frozen=True, slots=True)
class DeadJob:
    id: int
    venue_id: uuid.UUID
    provider: str
    entity_type: str
    operation: str
    lane: str
    attempts: int
    max_attempts: int
    error_kind: str | None
    last_error: str | None
    completed_at: datetime | None


async def dlq_list(
    conn: asyncpg.Connection, *, venue_id: uuid.UUID | None = None,
    provider: str | None = None, limit: int = 50,
) -> list[DeadJob]:
    rows = await conn.fetch(_Q["dlq_list"], venue_id, provider, limit)
    return [DeadJob(**dict(r)) for r in rows]


async def get_job(conn: asyncpg.Connection, job_id: int) -> dict[str, Any] | None:
    row = await conn.fetchrow(_Q["get_job"], job_id)
    return dict(row) if row is not None else None


async def dlq_replay(
    conn: asyncpg.Connection, *, ids: Sequence[int] | None = None,
    venue_id: uuid.UUID | None = None, provider: str | None = None,
    ttl_seconds: float = 7 * 86400.0,
) -> list[int]:
    """Dead letters back to pending with a fresh attempt budget; the ids replayed.

    A replayed sync whose integration and entity already have a pending sync absorbs it
    (one job, the higher lane). With no ids nor filters, every dead letter is replayed.
    """
    async with conn.transaction():
        rows = await conn.fetch(_Q["dlq_replay"], list(ids) if ids else None, venue_id,
                                provider, ttl_seconds)
        if rows:
            await conn.execute(_Q["notify"])
    return sorted(r["id"] for r in rows)


async def dlq_purge(
    conn: asyncpg.Connection, *, ids: Sequence[int] | None = None,
    venue_id: uuid.UUID | None = None, provider: str | None = None,
    older_than_s: float | None = None,
) -> list[int]:
    """Delete dead letters; the ids deleted."""
    rows = await conn.fetch(_Q["dlq_purge"], list(ids) if ids else None, venue_id, provider,
                            older_than_s)
    return sorted(r["id"] for r in rows)
