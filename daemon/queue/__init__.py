"""The durable Postgres queue: lanes, leases, retries, dead letters.

Workers run a :data:`JobHandler` the runtime builds (see :mod:`daemon.queue.handlers`);
producers call :func:`enqueue`.
"""

from daemon.queue.enqueue import NewJob, enqueue, enqueue_many
from daemon.queue.types import (
    LANES,
    Job,
    JobContext,
    JobHandler,
    JobResult,
    LeaseLost,
    Outcome,
)

__all__ = [
    "LANES",
    "Job",
    "JobContext",
    "JobHandler",
    "JobResult",
    "LeaseLost",
    "NewJob",
    "Outcome",
    "enqueue",
    "enqueue_many",
]
