"""What a sync run did: per-entity counts, the run's status and how it ended."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from daemon.provider import Entity
from daemon.sync.healing import HealChange

__all__ = ["EntityReport", "PlannedRecord", "RecordError", "RunOutcome", "RunReport"]


class RunOutcome(StrEnum):
    """How a run ended, for whoever decides what happens next (the queue handler)."""

    OK = "ok"                  # everything done; some records may have failed permanently
    RETRYABLE = "retryable"    # stopped on retryable errors; run again later
    AUTH = "auth"              # credentials refused even after a refresh
    CONFIG = "config"          # the integration or its mapping is unusable
    CANCELLED = "cancelled"


@dataclass(frozen=True, slots=True)
class RecordError:
    entity: str
    local_id: str
    kind: str
    error: str

    def as_json(self) -> dict[str, str]:
        return {"entity": self.entity, "local_id": self.local_id, "kind": self.kind,
                "error": self.error}


@dataclass(frozen=True, slots=True)
class PlannedRecord:
    """A record a dry run would send."""

    entity: str
    local_id: str
    operation: str
    remote_id: str | None
    payload: dict[str, Any]


@dataclass
class EntityReport:
    """Counts for one entity in one run."""

    entity: Entity
    full_check: bool = False
    scanned: int = 0
    unchanged: int = 0
    created: int = 0
    updated: int = 0
    deleted: int = 0
    archived: int = 0
    left: int = 0
    #: Changed records of a write-once entity, not sent: the provider cannot change them.
    frozen: int = 0
    failed: int = 0
    sent: int = 0
    batches: int = 0
    pulled: int = 0
    bytes_sent: int = 0
    planned: list[PlannedRecord] = field(default_factory=list)

    @property
    def succeeded(self) -> int:
        return self.created + self.updated + self.deleted + self.archived

    def as_json(self) -> dict[str, Any]:
        return {"full_check": self.full_check, "scanned": self.scanned,
                "unchanged": self.unchanged, "created": self.created,
                "updated": self.updated, "deleted": self.deleted, "archived": self.archived,
                "left": self.left, "frozen": self.frozen, "failed": self.failed,
                "sent": self.sent,
                "batches": self.batches, "pulled": self.pulled}


@dataclass
class RunReport:
    """One run of one integration."""

    venue_id: str
    provider: str
    started_at: datetime
    dry_run: bool = False
    entities: list[EntityReport] = field(default_factory=list)
    outcome: RunOutcome = RunOutcome.OK
    error: str | None = None
    retry_after: float | None = None
    api_calls: int = 0
    duration_ms: int = 0
    healed: list[HealChange] = field(default_factory=list)
    errors: list[RecordError] = field(default_factory=list)
    log_id: str | None = None
    #: What processing the inbound changes of this integration did before the push:
    #: changes per status (and ``status:reason``), e.g. {"applied": 2, "ignored:echo": 5}.
    inbound: dict[str, int] = field(default_factory=dict)

    @property
    def failed(self) -> int:
        return sum(e.failed for e in self.entities)

    @property
    def succeeded(self) -> int:
        return sum(e.succeeded for e in self.entities)

    @property
    def unchanged(self) -> int:
        return sum(e.unchanged for e in self.entities)

    @property
    def frozen(self) -> int:
        return sum(e.frozen for e in self.entities)

    @property
    def sent(self) -> int:
        return sum(e.sent for e in self.entities)

    @property
    def bytes_sent(self) -> int:
        return sum(e.bytes_sent for e in self.entities)

    @property
    def status(self) -> str:
        """The ``sync_logs`` status: completed, partial, failed or cancelled."""
        if self.outcome is RunOutcome.CANCELLED:
            return "cancelled"
        if self.outcome in (RunOutcome.AUTH, RunOutcome.CONFIG):
            return "failed"
        if self.outcome is RunOutcome.RETRYABLE:
            return "partial" if self.succeeded else "failed"
        if self.failed:
            return "partial" if (self.succeeded or self.unchanged or self.frozen) else "failed"
        return "completed"
