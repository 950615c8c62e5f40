"""``GET /healthz`` (alive, event loop responsive) and ``GET /readyz`` (able to serve).

Liveness is cheap and local: a monitor task wakes every ``interval`` seconds and records how
late it woke; a loop blocked by a runaway callback shows as lag, and a monitor that stopped
waking at all shows as a stale last tick. Readiness asks the things serving depends on:
the database answers, every migration is applied, the config directory is the revision last
applied, and provider plugins are loaded. Each failed check is a reason in the 503 body.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import asyncpg

from daemon.logs import get_logger
from daemon.sql import queries

__all__ = ["Check", "LoopLagMonitor", "readiness"]

log = get_logger("syncd.http")
_Q = queries("http.sql")


class LoopLagMonitor:
    """Measures event-loop lag: how late a periodic sleep wakes up."""

    def __init__(self, interval: float = 0.5) -> None:
        self.interval = interval
        self.lag = 0.0
        self.last_tick = time.monotonic()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None:
            self.last_tick = time.monotonic()
            self._task = asyncio.get_running_loop().create_task(self._run(), name="loop-lag")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        while True:
            before = time.monotonic()
            await asyncio.sleep(self.interval)
            now = time.monotonic()
            self.lag = max(0.0, now - before - self.interval)
            self.last_tick = now

    def current_lag(self) -> float:
        """The last measured lag, or the time since the monitor should have woken if more."""
        overdue = time.monotonic() - self.last_tick - self.interval
        return max(self.lag, overdue, 0.0)

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()


@dataclass(frozen=True, slots=True)
class Check:
    """One readiness check: its name, whether it passed, and a reason when it did not."""

    name: str
    ok: bool
    detail: str = ""


async def _database(
    pool: asyncpg.Pool, timeout: float
) -> tuple[Check, Check, tuple[int, str] | None]:
    from daemon.migrate import migration_status

    unknown = Check("migrations", False, "unknown: the database is unreachable")
    try:
        async with pool.acquire(timeout=timeout) as conn:
            await conn.fetchval(_Q["ping"], timeout=timeout)
            statuses = await migration_status(conn)
            behind = [f"{s.version:04d} {s.state}" for s in statuses if s.state != "applied"]
            if behind:
                return (Check("database", True),
                        Check("migrations", False, "not current: " + ", ".join(behind)), None)
            revision = await conn.fetchrow(_Q["latest_revision"], timeout=timeout)
    except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        return Check("database", False, f"database unreachable ({type(exc).__name__})"), \
            unknown, None
    applied = (revision["id"], revision["content_hash"]) if revision is not None else None
    return Check("database", True), Check("migrations", True), applied


def _config_hash(config_dir: Path) -> str | None:
    from daemon.config.loader import config_files
    from daemon.errors import SyncdError

    try:
        return config_files(config_dir).content_hash
    except (SyncdError, OSError):
        return None


async def _config(revision: tuple[int, str] | None, config_dir: Path,
                  schema_ok: bool) -> Check:
    if not schema_ok:
        return Check("config", False, "unknown until the database is reachable and current")
    if revision is None:
        return Check("config", False, "no config revision has been applied (syncd apply)")
    number, applied_hash = revision
    current = await asyncio.to_thread(_config_hash, config_dir)
    if current is not None and current != applied_hash:
        return Check("config", False,
                     f"the config directory differs from applied revision {number}")
    return Check("config", True, f"revision {number}")


def _plugins(providers: Mapping[str, object], failures: Sequence[str]) -> Check:
    if not providers:
        return Check("plugins", False, "no provider plugin is loaded")
    detail = ", ".join(sorted(providers))
    if failures:
        detail += "; failed to load: " + ", ".join(failures)
    return Check("plugins", True, detail)


async def readiness(pool: asyncpg.Pool, *, config_dir: Path, providers: Mapping[str, object],
                    plugin_failures: Sequence[str], timeout: float = 2.0) -> list[Check]:
    """Every readiness check, in a fixed order."""
    database, migrations, revision = await _database(pool, timeout)
    config = await _config(revision, config_dir, database.ok and migrations.ok)
    return [database, migrations, config, _plugins(providers, plugin_failures)]
