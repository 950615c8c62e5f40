"""The sync engine: incremental, idempotent, batched sync through field mappings."""

from daemon.sync.engine import SyncEngine, SyncError
from daemon.sync.health import HealthMonitor, classify, recompute_health
from daemon.sync.report import EntityReport, RunOutcome, RunReport
from daemon.sync.settings import SyncSettings

__all__ = [
    "EntityReport",
    "HealthMonitor",
    "RunOutcome",
    "RunReport",
    "SyncEngine",
    "SyncError",
    "SyncSettings",
    "classify",
    "recompute_health",
]
