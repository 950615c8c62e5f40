"""The worker's knobs, taken from :class:`~daemon.settings.Settings`."""

from __future__ import annotations

from dataclasses import dataclass

from daemon.retry import RetryPolicy
from daemon.settings import Settings

__all__ = ["WorkerConfig"]


@dataclass(frozen=True, slots=True)
class WorkerConfig:
    concurrency: int = 4
    batch_size: int = 10
    lane_weights: tuple[float, float, float, float] = (8.0, 4.0, 2.0, 1.0)
    lease_seconds: float = 60.0
    heartbeat_seconds: float = 15.0
    poll_seconds: float = 5.0
    retry_base_seconds: float = 5.0
    retry_cap_seconds: float = 3600.0
    grace_seconds: float = 30.0
    retention_seconds: float = 14 * 86400.0
    maintenance_seconds: float = 5.0
    prune_every_seconds: float = 600.0
    #: Loops exchanging results and claims with Postgres at once.
    pumps: int = 2

    @classmethod
    def from_settings(cls, settings: Settings, *, retry: RetryPolicy | None = None,
                      **overrides: object) -> WorkerConfig:
        """The worker's knobs; a job's retry backoff comes from ``retry`` (the runtime's
        policy) when given."""
        w = settings.queue_lane_weights
        values: dict[str, object] = {
            "concurrency": settings.worker_concurrency,
            "batch_size": settings.queue_batch_size,
            "lane_weights": (float(w[0]), float(w[1]), float(w[2]), float(w[3])),
            "lease_seconds": settings.queue_lease_seconds,
            "heartbeat_seconds": settings.queue_heartbeat_seconds,
            "poll_seconds": settings.queue_poll_seconds,
            "retry_base_seconds": (retry.job_base_seconds if retry is not None
                                   else settings.queue_retry_base_seconds),
            "retry_cap_seconds": (retry.job_cap_seconds if retry is not None
                                  else settings.queue_retry_cap_seconds),
            "grace_seconds": settings.worker_grace_seconds,
            "retention_seconds": settings.queue_retention_days * 86400.0,
            "maintenance_seconds": min(settings.queue_heartbeat_seconds, 5.0),
        }
        values.update(overrides)
        return cls(**values)  # type: ignore[arg-type]
