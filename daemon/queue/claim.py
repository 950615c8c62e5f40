"""Claiming due jobs: one round trip to ``syncd_claim_jobs`` (migrations/0005_queue_indexes.sql)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import asyncpg

from daemon.logs import get_logger
from daemon.queue import metrics
from daemon.queue.lanes import LaneScheduler
from daemon.queue.types import LANES, Job
from daemon.sql import queries

__all__ = ["claim_jobs"]

log = get_logger("syncd.queue")
_Q = queries("queue.sql")


async def claim_jobs(
    executor: Any,
    *,
    owner: str,
    limit: int,
    lanes: LaneScheduler,
    lease_seconds: float,
    completed: Sequence[tuple[int, uuid.UUID]] = (),
) -> list[Job]:
    """Claim up to ``limit`` due jobs for ``owner``, lanes served by weight, at most one per
    (venue, provider) running; advances ``lanes``. ``executor``: a connection or a pool.

    ``completed``: (job id, lease token) of jobs this worker finished, recorded as completed
    in the same transaction first (a token that no longer holds the lease changes nothing).
    """
    names, passes, weights = lanes.arguments()
    done_ids = [job_id for job_id, _ in completed] or None
    done_tokens = [token for _, token in completed] or None
    try:
        rows = await executor.fetch(_Q["claim"], owner, lease_seconds, limit, names, passes,
                                    weights, done_ids, done_tokens)
    except asyncpg.UniqueViolationError:
        # Defence in depth: the claim function keeps racing claimers apart, but should the
        # one-running index still refuse a row, nothing is claimed this time (the
        # completions are recorded on their own); the caller claims again.
        log.debug("queue.claim_race")
        if done_ids:
            await executor.fetch(_Q["claim"], owner, lease_seconds, 0, names, passes, weights,
                                 done_ids, done_tokens)
        return []
    now = datetime.now(UTC)
    counts = dict.fromkeys(LANES, 0)
    jobs = []
    for row in rows:
        job = Job.from_record(row)
        counts[job.lane] += 1
        metrics.observe_claim(job.lane, max((now - row["run_at"]).total_seconds(), 0.0))
        jobs.append(job)
    lanes.record(counts)
    return jobs
