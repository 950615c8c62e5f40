"""The composition root: one :class:`Runtime`, made once from the settings, owns what the
commands, the job handler, the daemon and the tests share.

It owns the database (the pool, and the platform's pool when that is another database),
the loaded plugins (loaded once, with hook tracing as the settings ask), the credential
store (the vault, OAuth refresh, references), the provider limiter registry (shared with
every replica through Postgres unless switched off), the per-account locks, the one
:class:`~daemon.retry.RetryPolicy`, and the sync engine. Every other long-lived object (the
job handler, the worker, the scheduler, the reconciler, the health monitor) is made by one
of its factory methods from those, so nothing builds a second engine, loads the plugins
again or reads the settings anew.

Lifecycle::

    runtime = Runtime(settings)          # cheap: nothing opened yet
    async with runtime.opened(migrate=True):
        await runtime.engine.run(venue, "square")

The plugins load on first use of :attr:`Runtime.plugins`; the credential store, limiters and
engine are built on first use once the database is open.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

import asyncpg
import httpx

from daemon.db import Database, open_pool
from daemon.errors import MigrationError, SyncdError
from daemon.locks import AccountLocks
from daemon.logs import get_logger
from daemon.plugins import Plugins, load_plugins
from daemon.provider import Provider
from daemon.ratelimit import LimiterRegistry
from daemon.retry import RetryPolicy
from daemon.settings import Settings
from daemon.source import SourceReader, SourceSettings
from daemon.sync.settings import SyncSettings

if TYPE_CHECKING:
    from daemon.credentials import TokenSource
    from daemon.http.processing import WebhookProcessor
    from daemon.inbound.processor import InboundProcessor
    from daemon.queue.types import JobHandler
    from daemon.ratelimit_shared import PostgresLimits
    from daemon.reconcile.watch import Reconciler
    from daemon.scheduler.scheduler import Scheduler
    from daemon.sync.engine import SyncEngine
    from daemon.sync.health import HealthMonitor
    from daemon.sync.job import SyncJobHandler
    from daemon.vault.cipher import Vault
    from daemon.vault.store import VaultCredentialStore
    from daemon.worker.config import WorkerConfig
    from daemon.worker.runner import Worker

__all__ = ["Runtime"]

log = get_logger("syncd.runtime")


class Runtime:
    """What one syncd process shares, built once from its settings."""

    def __init__(
        self,
        settings: Settings,
        *,
        plugins: Plugins | None = None,
        sync: SyncSettings | None = None,
        source: SourceSettings | None = None,
        tokens: TokenSource | None = None,
        pool: asyncpg.Pool | None = None,
        http: httpx.AsyncClient | None = None,
        limiters: LimiterRegistry | None = None,
    ) -> None:
        """``plugins``, ``sync`` and ``source`` default to what the settings and environment
        give; ``tokens`` answers OAuth tokens (default: the emulators' when the sync
        settings point providers at base URLs of their own); ``pool`` is an
        open pool to use instead of opening the configured database (tests); ``http`` a
        shared HTTP client for provider calls (else each run opens its own); ``limiters``
        the provider limiters to use instead of those the settings make (tests: limiters
        on virtual time)."""
        self._settings = settings
        self._plugins = plugins
        self.sync_settings = sync if sync is not None else SyncSettings()
        self.source_settings = source if source is not None else SourceSettings()
        if tokens is None and self.sync_settings.base_urls:
            # Providers pointed at emulators or sandboxes (SYNCD_SYNC_BASE_URLS): their test
            # tokens answer OAuth integrations.
            from daemon.credentials import EmulatorTokens

            tokens = EmulatorTokens(self.sync_settings.base_urls)
        self.tokens = tokens
        self.http = http
        self.locks = AccountLocks()
        self.retry = RetryPolicy.from_settings(settings, self.sync_settings)
        self._given_pool = pool
        self._given_limiters = limiters
        if limiters is not None:
            self.__dict__["limiters"] = limiters  # the cached property's value
        self._database: Database | None = None
        self._source_pool: asyncpg.Pool | None = None
        self._shared: PostgresLimits | None = None
        self._open = False

    # --- settings and plugins ---------------------------------------------------------

    @property
    def settings(self) -> Settings:
        return self._settings

    def configure(self, **updates: Any) -> None:
        """Change settings before :meth:`open` (a command's flags, the daemon's pool size)."""
        if self._open:
            raise RuntimeError("the runtime is open: its settings are fixed")
        self._settings = self._settings.model_copy(update=updates)
        self.retry = RetryPolicy.from_settings(self._settings, self.sync_settings)

    @property
    def plugins(self) -> Plugins:
        """The plugins, loaded once (with hook tracing when ``SYNCD_TRACE_HOOKS`` is on)."""
        if self._plugins is None:
            self._plugins = load_plugins(self._settings.plugins,
                                         trace=self._settings.trace_hooks)
        return self._plugins

    @property
    def providers(self) -> Mapping[str, Provider]:
        return self.plugins.providers

    @property
    def base_urls(self) -> Mapping[str, str]:
        """Provider base URL overrides (emulators, sandboxes)."""
        return self.sync_settings.base_urls

    # --- lifecycle --------------------------------------------------------------------

    @property
    def is_open(self) -> bool:
        return self._open

    async def open(self, *, migrate: bool = False) -> Runtime:
        """Open the database (unless a pool was given) and the platform's pool when it is
        elsewhere; ``migrate`` applies pending migrations first."""
        if self._open:
            return self
        if self._given_pool is None:
            self._database = Database(self._settings)
            await self._database.open()
        try:
            if migrate:
                from daemon.migrate import apply_migrations

                async with self.pool.acquire() as conn:
                    await apply_migrations(conn)
            url = self.source_settings.database_url
            if url is not None and url.get_secret_value():
                self._source_pool = await open_pool(
                    url.get_secret_value(), timeout=self._settings.db_connect_timeout,
                    acquire_timeout=self._settings.db_acquire_timeout)
        except BaseException:
            await self._close_database()
            raise
        self._open = True
        return self

    async def close(self) -> None:
        """Release what :meth:`open` and the factories opened; the runtime may open again."""
        if self._shared is not None:
            shared, self._shared = self._shared, None
            await shared.close()
        if self._source_pool is not None:
            source, self._source_pool = self._source_pool, None
            await source.close()
        await self._close_database()
        for name in ("limiters", "credentials", "engine", "vault"):
            self.__dict__.pop(name, None)
        if self._given_limiters is not None:
            self.__dict__["limiters"] = self._given_limiters
        self._open = False

    async def _close_database(self) -> None:
        if self._database is not None:
            database, self._database = self._database, None
            await database.close()

    @asynccontextmanager
    async def opened(self, *, migrate: bool = False) -> AsyncIterator[Runtime]:
        """The runtime, open for the block; closed after it when the block opened it."""
        if self._open:
            if migrate:
                from daemon.migrate import apply_migrations

                async with self.pool.acquire() as conn:
                    await apply_migrations(conn)
            yield self
            return
        await self.open(migrate=migrate)
        try:
            yield self
        finally:
            await self.close()

    async def __aenter__(self) -> Runtime:
        return await self.open()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # --- what the database gives ------------------------------------------------------

    @property
    def database(self) -> Database:
        """The configured (or embedded) database; not there when a pool was given."""
        if self._database is None:
            raise RuntimeError("the runtime runs on a pool it was given, or is not open")
        return self._database

    @property
    def pool(self) -> asyncpg.Pool:
        if self._given_pool is not None:
            return self._given_pool
        if self._database is None:
            raise RuntimeError("the runtime is not open")
        return self._database.pool

    @property
    def dsn(self) -> str:
        """The database URL in use (for a dedicated connection, e.g. leadership)."""
        if self._database is not None:
            return self._database.dsn
        params = self.pool._connect_args[0] if self.pool._connect_args else None
        if isinstance(params, str):
            return params
        raise RuntimeError("the runtime's pool has no URL to connect with")

    async def pending_migrations(self) -> list[str]:
        """``NNNN name (state)`` of every migration not applied; raises on a changed one."""
        from daemon.migrate import migration_status

        async with self.pool.acquire() as conn:
            statuses = await migration_status(conn)
        changed = [s for s in statuses if s.state == "changed"]
        if changed:
            raise MigrationError(
                f"migration {changed[0].version:04d} was changed after it was applied")
        return [f"{s.version:04d} {s.name}" for s in statuses if s.state != "applied"]

    @cached_property
    def limiters(self) -> LimiterRegistry:
        """The provider limiters of this process; with ``SYNCD_RATELIMIT_SHARED`` (the
        default) they enforce each account's limits across every replica too."""
        if not self._settings.ratelimit_shared:
            return LimiterRegistry()
        from daemon.ratelimit_shared import PostgresLimits, SharedLimitSettings

        self._shared = PostgresLimits(self.pool, SharedLimitSettings(
            margin=self._settings.ratelimit_margin,
            grant_seconds=self._settings.ratelimit_grant_seconds))
        return LimiterRegistry(shared=self._shared)

    @cached_property
    def vault(self) -> Vault:
        """The vault on the configured key provider (commands that store or rotate secrets;
        raises when no key is configured and none may be made)."""
        from daemon.vault.provider import load_vault

        return load_vault(self.plugins, self._settings)

    @cached_property
    def credentials(self) -> VaultCredentialStore:
        """The credential store: the vault (when a key is configured), OAuth refresh, and
        references behind them."""
        from daemon.vault.store import build_credential_store

        return build_credential_store(self.pool, self.tokens, settings=self._settings,
                                      plugins=self.plugins, base_urls=self.base_urls)

    @cached_property
    def source(self) -> SourceReader:
        """The reader of the platform's tables (its own pool when they live elsewhere)."""
        return SourceReader(self._source_pool or self.pool, self.source_settings)

    @cached_property
    def inbound(self) -> InboundProcessor:
        """The processor of inbound changes: into the platform's tables the source reads,
        through the plugins' ``syncd_inbound_change`` sinks first."""
        from daemon.inbound.build import inbound_processor

        return inbound_processor(self.pool, self.providers, source=self.source,
                                 hook=self.plugins.hook)

    @cached_property
    def engine(self) -> SyncEngine:
        """The sync engine: the one every run of this process goes through."""
        from daemon.sync.engine import SyncEngine

        return SyncEngine(self.pool, self.providers, self.credentials, source=self.source,
                          http=self.http, settings=self.sync_settings,
                          limiters=self.limiters, retry=self.retry, locks=self.locks,
                          inbound=self.inbound)

    def client_context(self) -> dict[str, Any]:
        """The process's shared parts of a :class:`~daemon.provider.ClientContext`."""
        return {"limiters": self.limiters, "retry": self.retry, "locks": self.locks}

    # --- factories --------------------------------------------------------------------

    def sync_handler(self) -> SyncJobHandler:
        from daemon.sync.job import SyncJobHandler

        return SyncJobHandler(self.engine)

    def webhook_processor(self) -> WebhookProcessor:
        from daemon.http.processing import WebhookProcessor

        return WebhookProcessor(self.providers,
                                max_attempts=self._settings.webhook_max_attempts,
                                inbound=self.inbound)

    def job_handler(self, spec: str | None = None) -> JobHandler:
        """The handler workers run: ``spec`` (``module:function``) if given, else the
        ``default`` factory of the ``syncd.job_handlers`` entry-point group, given this
        runtime (webhook processing, then the sync engine)."""
        from daemon.queue import handlers

        return handlers.load(spec, self)

    def worker_config(self, **overrides: object) -> WorkerConfig:
        from daemon.worker.config import WorkerConfig

        return WorkerConfig.from_settings(self._settings, retry=self.retry, **overrides)

    def worker(self, handler: JobHandler, *, owner: str | None = None) -> Worker:
        from daemon.worker.runner import Worker

        return Worker(self.pool, handler, self.worker_config(), owner=owner)

    def scheduler(self) -> Scheduler:
        from daemon.scheduler.scheduler import Scheduler

        s = self._settings
        return Scheduler(self.pool, poll_seconds=s.scheduler_poll_seconds,
                         jitter_seconds=s.scheduler_jitter_seconds,
                         retention_seconds=s.queue_retention_days * 86400.0,
                         ttl_seconds=s.queue_job_ttl_seconds,
                         max_attempts=self.retry.job_attempts,
                         catchup_spread_seconds=s.scheduler_catchup_spread_seconds,
                         time_scale=s.scheduler_time_scale)

    def reconciler(self, config_dir: Path | None = None, *, prune: bool = False,
                   source: str = "daemon") -> Reconciler:
        from daemon.config import YamlLimits
        from daemon.credential_scope import CredentialScope
        from daemon.reconcile.watch import Reconciler

        s = self._settings
        return Reconciler(
            self.pool, self.plugins, config_dir or s.config_dir,
            poll_interval=s.config_poll_interval, max_disable_share=s.config_max_disable_share,
            prune=prune, source=source,
            limits=YamlLimits(max_file_bytes=s.config_max_file_bytes,
                              max_depth=s.config_max_depth, max_nodes=s.config_max_nodes),
            scope=CredentialScope.from_settings(s))

    def health_monitor(self) -> HealthMonitor:
        from daemon.sync.health import HealthMonitor

        s = self._settings
        return HealthMonitor(self.pool, self.providers, self.credentials,
                             interval=s.health_interval_seconds, http=self.http,
                             base_urls=self.base_urls, batch_size=s.health_batch_size,
                             context=self.client_context())

    def require_providers(self) -> None:
        """Refuse to run jobs with no provider plugin loaded."""
        if not self.providers:
            failed = "; ".join(f"{f.name}: {f.error}" for f in self.plugins.failed)
            raise SyncdError("no provider plugin is loaded"
                             + (f" (failed: {failed})" if failed else ""))
