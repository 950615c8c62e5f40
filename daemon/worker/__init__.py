"""The worker process: queue workers and, while leader, the scheduler."""

from daemon.worker.config import WorkerConfig
from daemon.worker.context import RunContext
from daemon.worker.runner import Worker, default_owner

__all__ = ["RunContext", "Worker", "WorkerConfig", "default_owner"]
