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

import asyncpg

from daemon.credentials import EmulatorTokens
from daemon.inbound.build import inbound_processor
from daemon.logs import get_logger
from daemon.provider import Entity, Provider
from daemon.queue import handlers
from daemon.queue.types import Job, JobContext, JobResult, LeaseLost, Outcome
from daemon.ratelimit import LimiterRegistry
from daemon.ratelimit_shared import PostgresLimits, SharedLimitSettings
from daemon.source import SourceReader, SourceSettings
from daemon.sync.engine import SyncEngine, SyncError
from daemon.sync.report import RunOutcome, RunReport
from daemon.sync.settings import SyncSettings
from daemon.vault.store import build_credential_store

__all__ = ["SyncJobHandler", "handle", "register", "result_for"]

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
    """Builds one engine per pool (plugins loaded once) and runs jobs on it."""

    def __init__(self, providers: dict[str, Provider] | None = None,
                 settings: SyncSettings | None = None) -> None:
        self._providers = providers
        self.settings = settings
        self._engines: dict[int, SyncEngine] = {}
        self._source_pool: asyncpg.Pool | None = None
        #: The plugins' hook relay (their syncd_inbound_change sinks), once loaded here.
        self._hook: Any = None

    def _load_providers(self) -> dict[str, Provider]:
        if self._providers is None:
            from daemon.plugins import load_plugins
            from daemon.settings import Settings

            settings = Settings()
            plugins = load_plugins(settings.plugins)
            self._providers = dict(plugins.providers)
            self._hook = plugins.hook
        return self._providers

    async def engine(self, pool: asyncpg.Pool) -> SyncEngine:
        engine = self._engines.get(id(pool))
        if engine is None:
            settings = self.settings or SyncSettings()
            source_settings = SourceSettings()
            source_pool = pool
            if source_settings.database_url is not None:
                from daemon.db import open_pool
                from daemon.settings import Settings

                if self._source_pool is None:
                    self._source_pool = await open_pool(
                        source_settings.database_url.get_secret_value(),
                        acquire_timeout=Settings().db_acquire_timeout)
                source_pool = self._source_pool
            tokens = EmulatorTokens(settings.base_urls) if settings.base_urls else None
            providers = self._load_providers()
            source = SourceReader(source_pool, source_settings)
            engine = SyncEngine(pool, providers,
                                build_credential_store(pool, tokens,
                                                       base_urls=settings.base_urls),
                                source=source, settings=settings,
                                limiters=self._limiters(pool),
                                inbound=inbound_processor(pool, providers, source=source,
                                                          hook=self._hook))
            self._engines[id(pool)] = engine
        return engine

    def _limiters(self, pool: asyncpg.Pool) -> LimiterRegistry:
        """The process's provider limiters: shared with every replica through Postgres
        unless ``SYNCD_RATELIMIT_SHARED`` is off."""
        from daemon.settings import Settings

        settings = Settings()
        if not settings.ratelimit_shared:
            return LimiterRegistry()
        shared = PostgresLimits(pool, SharedLimitSettings(
            margin=settings.ratelimit_margin, grant_seconds=settings.ratelimit_grant_seconds))
        return LimiterRegistry(shared=shared)

    async def __call__(self, job: Job, ctx: JobContext) -> JobResult:
        entity: Entity | None = None
        if job.entity_type not in ("all", "*", ""):
            try:
                entity = Entity(job.entity_type)
            except ValueError:
                return JobResult(Outcome.FAILED, f"unknown entity {job.entity_type!r}")
        payload: Any = job.payload or {}
        full = bool(payload.get("full")) or job.operation == "reconcile"
        engine = await self.engine(ctx.pool)
        try:
            report = await engine.run(
                str(job.venue_id), job.provider, entity=entity, full=full, job_id=job.id,
                guard=ctx.assert_lease, cancelled=lambda: ctx.cancelled)
        except SyncError as exc:
            return JobResult(Outcome.FAILED, str(exc))
        except LeaseLost as exc:
            log.warning("sync.lease_lost", job_id=job.id, venue_id=str(job.venue_id),
                        provider=job.provider)
            return JobResult(Outcome.RETRY, str(exc))
        return result_for(report)


#: The handler ``syncd worker`` runs (entry point ``syncd.job_handlers: default``).
handle = SyncJobHandler()


def register(*, replace: bool = False) -> None:
    """Register :data:`handle` with the queue's handler registry."""
    handlers.register(handle, replace=replace)
