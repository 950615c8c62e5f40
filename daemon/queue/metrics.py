"""Queue metrics in a module-level Prometheus registry, for the HTTP server to expose."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from daemon.queue.types import LANES

__all__ = [
    "CLAIM_LATENCY",
    "DEPTH",
    "JOBS",
    "REGISTRY",
    "RUN_TIME",
    "observe_claim",
    "observe_depth",
    "observe_run",
]

REGISTRY = CollectorRegistry(auto_describe=True)

DEPTH = Gauge(
    "syncd_queue_depth",
    "Jobs in the queue by lane and status (pending, processing).",
    ["lane", "status"],
    registry=REGISTRY,
)
CLAIM_LATENCY = Histogram(
    "syncd_queue_claim_latency_seconds",
    "Seconds from a job falling due to a worker claiming it.",
    ["lane"],
    buckets=(0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 15, 60, 300, 1800, 3600),
    registry=REGISTRY,
)
RUN_TIME = Histogram(
    "syncd_job_run_seconds",
    "Seconds a job's handler ran, by lane and outcome.",
    ["lane", "outcome"],
    buckets=(0.01, 0.05, 0.1, 0.5, 1, 5, 15, 60, 300, 900, 3600),
    registry=REGISTRY,
)
JOBS = Counter(
    "syncd_jobs",
    "Jobs finished by this process, by lane and outcome.",
    ["lane", "outcome"],
    registry=REGISTRY,
)


_LATENCY_BY_LANE = {lane: CLAIM_LATENCY.labels(lane=lane) for lane in LANES}
_RUN_BY_KEY: dict[tuple[str, str], tuple[Histogram, Counter]] = {}


def observe_claim(lane: str, seconds: float) -> None:
    """Record how long a claimed job waited after falling due."""
    child = _LATENCY_BY_LANE.get(lane) or CLAIM_LATENCY.labels(lane=lane)
    child.observe(seconds)


def observe_run(lane: str, outcome: str, seconds: float) -> None:
    """Record a finished run."""
    pair = _RUN_BY_KEY.get((lane, outcome))
    if pair is None:
        pair = (RUN_TIME.labels(lane=lane, outcome=outcome),
                JOBS.labels(lane=lane, outcome=outcome))
        _RUN_BY_KEY[(lane, outcome)] = pair
    pair[0].observe(seconds)
    pair[1].inc()


def observe_depth(rows: Iterable[Mapping[str, object]]) -> None:
    """Set the depth gauge from ``(lane, status, jobs)`` rows; absent pairs read 0."""
    seen = {(str(r["lane"]), str(r["status"])): r["jobs"] for r in rows}
    for lane in LANES:
        for status in ("pending", "processing"):
            value = seen.get((lane, status), 0)
            DEPTH.labels(lane=lane, status=status).set(float(value))  # type: ignore[arg-type]
