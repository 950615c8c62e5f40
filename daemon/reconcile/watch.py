"""The reconciler the daemon runs: apply the config at start, on SIGHUP and on file change.

Level-triggered: each pass loads the whole config directory and applies the difference. A
config that fails validation (or that the disable guard refuses) is rejected whole and the
last applied revision stays in force; every problem is logged. :attr:`Reconciler.status` is
what readiness checks and metrics read.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg

from daemon.config import ConfigInvalid, YamlLimits, config_files, load_config_files
from daemon.config.applied import AppliedFile
from daemon.config.limits import DEFAULT_LIMITS
from daemon.credential_scope import CredentialScope
from daemon.errors import SyncdError
from daemon.logs import get_logger
from daemon.loop import in_daemon_thread
from daemon.plugins import Plugins
from daemon.reconcile.apply import apply_desired, git_commit
from daemon.reconcile.files import fetch_applied_files
from daemon.sql import queries

__all__ = ["ReconcileStatus", "Reconciler", "fingerprint"]

log = get_logger("syncd.reconcile")


@dataclass(frozen=True, slots=True)
class ReconcileStatus:
    """The reconciler's state, for readiness checks and metrics."""

    #: The revision in force (the last one applied, by this process or before it).
    revision_id: int | None = None
    content_hash: str | None = None
    last_attempt_at: datetime | None = None
    last_success_at: datetime | None = None
    #: Why the last attempt failed (None when it succeeded).
    last_error: str | None = None
    attempts: int = 0
    failures: int = 0

    @property
    def healthy(self) -> bool:
        """The last attempt succeeded: the files on disk are what is in force."""
        return self.last_success_at is not None and self.last_error is None

    @property
    def ready(self) -> bool:
        """A revision is in force (possibly an older one while the files are invalid)."""
        return self.revision_id is not None

    def metrics(self) -> dict[str, float]:
        """Gauge values for the metrics endpoint."""
        return {
            "syncd_config_revision": float(self.revision_id or 0),
            "syncd_config_healthy": 1.0 if self.healthy else 0.0,
            "syncd_config_last_success_timestamp_seconds":
                self.last_success_at.timestamp() if self.last_success_at else 0.0,
            "syncd_config_reconcile_attempts_total": float(self.attempts),
            "syncd_config_reconcile_failures_total": float(self.failures),
        }

    def as_dict(self) -> dict[str, Any]:
        return {
            "revision_id": self.revision_id,
            "content_hash": self.content_hash,
            "last_attempt_at": self.last_attempt_at.isoformat() if self.last_attempt_at
            else None,
            "last_success_at": self.last_success_at.isoformat() if self.last_success_at
            else None,
            "last_error": self.last_error,
            "attempts": self.attempts,
            "failures": self.failures,
        }


def fingerprint(root: Path) -> tuple[tuple[str, int, int], ...]:
    """Names, sizes and modification times of the config files: cheap to poll."""
    out: list[tuple[str, int, int]] = []
    for sub in ("venues", "templates"):
        directory = root / sub
        if not directory.is_dir():
            continue
        for path in sorted(directory.iterdir()):
            if path.suffix in (".yaml", ".yml"):
                with contextlib.suppress(OSError):
                    st = path.stat()
                    out.append((str(path), st.st_size, st.st_mtime_ns))
    return tuple(out)


class Reconciler:
    """Keeps the database at the config directory's desired state."""

    def __init__(self, pool: asyncpg.Pool, plugins: Plugins, config_dir: Path, *,
                 poll_interval: float = 5.0, max_disable_share: float = 0.5,
                 prune: bool = False, source: str = "daemon",
                 limits: YamlLimits = DEFAULT_LIMITS,
                 scope: CredentialScope | None = None) -> None:
        self.pool = pool
        self.limits = limits
        self.scope = scope
        self.plugins = plugins
        self.config_dir = config_dir
        self.poll_interval = poll_interval
        self.max_disable_share = max_disable_share
        self.prune = prune
        self.source = source
        self.status = ReconcileStatus()
        self._wake = asyncio.Event()
        self._last_hash: str | None = None
        self._last_fingerprint: tuple[tuple[str, int, int], ...] | None = None

    def request(self) -> None:
        """Reconcile as soon as possible (SIGHUP calls this)."""
        self._wake.set()

    async def _revision_in_force(self) -> None:
        try:
            async with self.pool.acquire() as conn:
                row = await conn.fetchrow(queries("config.sql")["latest_revision"])
        except (OSError, asyncpg.PostgresError) as exc:
            log.warning("config.revision_unknown", error=f"{type(exc).__name__}: {exc}")
            return
        if row is not None:
            self.status = replace(self.status, revision_id=row["id"],
                                  content_hash=row["content_hash"])

    async def _applied_files(self) -> dict[str, AppliedFile] | None:
        """The record of the last applied files: those unchanged are not read again."""
        try:
            async with self.pool.acquire() as conn:
                return await fetch_applied_files(conn)
        except (OSError, asyncpg.PostgresError) as exc:
            log.warning("config.applied_files_unknown", error=f"{type(exc).__name__}: {exc}")
            return None

    async def reconcile_once(self, stop: asyncio.Event | None = None) -> bool:
        """One pass; True when the config is in force afterwards. When ``stop`` is set while
        the files load, nothing is applied (shutdown does not wait for the apply)."""
        now = datetime.now(UTC)
        self.status = replace(self.status, last_attempt_at=now,
                              attempts=self.status.attempts + 1)
        self._last_fingerprint = fingerprint(self.config_dir)
        try:
            files = await in_daemon_thread(config_files, self.config_dir, self.limits)
            self._last_hash = files.content_hash
            if stop is not None and stop.is_set():
                log.info("config.reconcile_interrupted")
                return False
            applied = await self._applied_files()
            desired = await in_daemon_thread(load_config_files, files, self.plugins,
                                             limits=self.limits, scope=self.scope,
                                             applied=applied)
            commit = await in_daemon_thread(git_commit, self.config_dir)
            if stop is not None and stop.is_set():
                log.info("config.reconcile_interrupted")
                return False
            async with self.pool.acquire() as conn:
                result = await apply_desired(
                    conn, desired, prune=self.prune, max_disable_share=self.max_disable_share,
                    source=self.source, commit=commit)
        except ConfigInvalid as exc:
            for problem in exc.problems:
                log.error("config.invalid", file=problem.file, line=problem.line,
                          column=problem.column, key=problem.key, problem=problem.message,
                          hint=problem.hint)
            return self._failed(f"config rejected: {len(exc.problems)} problem(s); first: "
                                f"{exc.problems[0]}")
        except SyncdError as exc:
            log.error("config.apply_refused", error=str(exc))
            return self._failed(str(exc))
        except (OSError, asyncpg.PostgresError) as exc:
            log.error("config.apply_failed", error=f"{type(exc).__name__}: {exc}")
            return self._failed(f"{type(exc).__name__}: {exc}")
        if result.revision_id is not None:
            self.status = replace(self.status, revision_id=result.revision_id,
                                  content_hash=desired.content_hash)
        else:
            await self._revision_in_force()
        self.status = replace(self.status, last_success_at=datetime.now(UTC), last_error=None)
        log.info("config.reconciled", revision=self.status.revision_id,
                 changes=len(result.plan.changes))
        return True

    def _failed(self, error: str) -> bool:
        self.status = replace(self.status, last_error=error,
                              failures=self.status.failures + 1)
        return False

    def _changed(self) -> bool:
        current = fingerprint(self.config_dir)
        if current == self._last_fingerprint:
            return False
        self._last_fingerprint = current
        try:
            content = config_files(self.config_dir, self.limits).content_hash
        except (OSError, SyncdError):
            return True
        return content != self._last_hash

    async def run(self, stop: asyncio.Event | None = None, *,
                  handle_sighup: bool = True) -> None:
        """Reconcile now, then on SIGHUP (unless the caller handles it and calls
        :meth:`request`) or file change, until ``stop`` is set."""
        stop = stop or asyncio.Event()
        loop = asyncio.get_running_loop()
        installed = False
        if handle_sighup:
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                loop.add_signal_handler(signal.SIGHUP, self.request)
                installed = True
        try:
            await self._revision_in_force()
            await self.reconcile_once(stop)
            while not stop.is_set():
                waiters = {asyncio.ensure_future(self._wake.wait()),
                           asyncio.ensure_future(stop.wait())}
                _, pending = await asyncio.wait(waiters, timeout=self.poll_interval,
                                                return_when=asyncio.FIRST_COMPLETED)
                for task in pending:
                    task.cancel()
                if stop.is_set():
                    break
                if self._wake.is_set():
                    self._wake.clear()
                    log.info("config.reload_requested")
                    await self.reconcile_once(stop)
                elif await in_daemon_thread(self._changed):
                    log.info("config.files_changed")
                    await self.reconcile_once(stop)
        finally:
            if installed:
                loop.remove_signal_handler(signal.SIGHUP)
