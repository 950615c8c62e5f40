"""Queue metrics in the module registry: depth by lane, claim latency, run time."""

from __future__ import annotations

import uuid

import asyncpg
from prometheus_client import generate_latest

from daemon.queue import LANES, NewJob, enqueue_many
from daemon.queue.claim import claim_jobs
from daemon.queue.lanes import LaneScheduler
from daemon.queue.maintenance import refresh_depth
from daemon.queue.metrics import REGISTRY, observe_run


def _value(name: str, **labels: str) -> float:
    value = REGISTRY.get_sample_value(name, labels)
    return 0.0 if value is None else value


async def test_depth_claim_latency_and_run_time(pool: asyncpg.Pool) -> None:
    await enqueue_many(pool, [
        NewJob(venue_id=uuid.uuid4(), provider="square", entity_type="e", lane=lane)
        for lane in LANES for _ in range(3)
    ])
    await refresh_depth(pool)
    assert _value("syncd_queue_depth", lane="HIGH", status="pending") == 3
    before = _value("syncd_queue_claim_latency_seconds_count", lane="CRITICAL")
    jobs = await claim_jobs(pool, owner="m", limit=2, lanes=LaneScheduler(), lease_seconds=60)
    assert [j.lane for j in jobs] == ["CRITICAL", "CRITICAL"]
    assert _value("syncd_queue_claim_latency_seconds_count", lane="CRITICAL") == before + 2
    await refresh_depth(pool)
    assert _value("syncd_queue_depth", lane="CRITICAL", status="processing") == 2
    assert _value("syncd_queue_depth", lane="CRITICAL", status="pending") == 1

    runs = _value("syncd_jobs_total", lane="LOW", outcome="retry")
    observe_run("LOW", "retry", 0.25)
    assert _value("syncd_jobs_total", lane="LOW", outcome="retry") == runs + 1
    assert b"syncd_job_run_seconds_bucket" in generate_latest(REGISTRY)
