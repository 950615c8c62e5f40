"""The queue's job handler for sync jobs: runs the engine and classifies how it ended.

=============================  ==============================================================
engine outcome                 job result
=============================  ==============================================================
ok (completed)                 COMPLETED
ok with rejected records       COMPLETED; the sync log is ``partial`` and each record's reason
                               is in ``entity_links`` and the log's ``errors``
retryable (429, 5xx, network)  RETRY with the provider's Retry-After as the floor
auth (after one refresh)       AUTH; the integration's status is ``error``
config (mapping, disabled...)  FAILED
cancelled / lease lost         RETRY
=============================  ==============================================================

A job's ``entity_type`` names one entity, or ``all``/``*`` for every mapped entity; its
``payload`` may carry ``{"full": true}``; operation ``reconcile`` means a full check. Results
are written inside transactions that first call the queue's ``assert_lease``, so a worker
whose lease was taken over cannot commit anything.
"""

from __future__ import annotations

from typing import Any

from daemon.logs import get_logger
from daemon.provider import Entity
from daemon.queue.types import Job, JobContext, JobResult, LeaseLost, Outcome
from daemon.sync.engine import SyncEngine, SyncError
from daemon.sync.report import RunOutcome, RunReport

__all__ = ["SyncJobHandler", "result_for"]

log = get_logger("syncd.sync")


def result_for(report: RunReport) -> JobResult:
    """The queue's view of a finished run."""
    if report.outcome is RunOutcome.OK:
        error = f"{report.failed} records rejected" if report.failed else None
        return JobResult(Outcome.COMPLETED, error)
    if report.outcome is RunOutcome.RETRYABLE:
        return JobResult(Outcome.RETRY, report.error, report.retry_after)
    if report.outcome is RunOutcome.AUTH:
        return JobResult(Outcome.AUTH, report.error)
    if report.outcome is RunOutcome.CANCELLED:
        return JobResult(Outcome.RETRY, "cancelled")
    return JobResult(Outcome.FAILED, report.error)


class SyncJobHandler:
    """Runs sync jobs on the runtime's engine (built once, with the process's plugins,
    credential store, limiters and retry policy)."""

    def __init__(self, engine: SyncEngine) -> None:
        self.engine = engine

    async def __call__(self, job: Job, ctx: JobContext) -> JobResult:
        entity: Entity | None = None
        if job.entity_type not in ("all", "*", ""):
            try:
                entity = Entity(job.entity_type)
            except ValueError:
                return JobResult(Outcome.FAILED, f"unknown entity {job.entity_type!r}")
        payload: Any = job.payload or {}
        full = bool(payload.get("full")) or job.operation == "reconcile"
        try:
            report = await self.engine.run(
                str(job.venue_id), job.provider, entity=entity, full=full, job_id=job.id,
                guard=ctx.assert_lease, cancelled=lambda: ctx.cancelled)
        except SyncError as exc:
            return JobResult(Outcome.FAILED, str(exc))
        except LeaseLost as exc:
            log.warning("sync.lease_lost", job_id=job.id, venue_id=str(job.venue_id),
                        provider=job.provider)
            return JobResult(Outcome.RETRY, str(exc))
        return result_for(report)
