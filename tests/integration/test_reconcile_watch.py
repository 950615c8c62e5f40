"""The reconciler loop: start, file changes, SIGHUP, and rejected configs."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Awaitable, Callable
from pathlib import Path

import asyncpg
import pytest
from structlog.testing import capture_logs

from daemon.config.testing import SmallPlugin
from daemon.plugins import Plugins, load_plugins
from daemon.reconcile import Reconciler

VID = "6f1c2a9e-0b7d-4c1e-9a55-3f2d8b7c1a01"


def venue(cron: str = "0 * * * *") -> str:
    return (f"venue: {{id: {VID}, name: Laugh Loft}}\nintegrations:\n"
            f"  - provider: testprov\n    credentials: {{api_key: env:K}}\n"
            f'    schedules: {{product: {{cron: "{cron}"}}}}\n')


@pytest.fixture
def plugins() -> Plugins:
    return load_plugins([], extra=[("small", SmallPlugin())])


@pytest.fixture
def config(tmp_path: Path) -> Path:
    (tmp_path / "venues").mkdir()
    (tmp_path / "venues" / "v.yaml").write_text(venue())
    return tmp_path


async def eventually(check: Callable[[], Awaitable[bool]], timeout: float = 10.0) -> None:
    async with asyncio.timeout(timeout):
        while not await check():
            await asyncio.sleep(0.02)


async def cron_in_db(pool: asyncpg.Pool) -> str | None:
    value = await pool.fetchval("SELECT schedules->'product'->>'cron' FROM integration_configs")
    return str(value) if value is not None else None


async def test_reconciles_at_start_on_change_and_on_sighup(
        pool: asyncpg.Pool, plugins: Plugins, config: Path) -> None:
    rec = Reconciler(pool, plugins, config, poll_interval=0.05)
    stop = asyncio.Event()
    task = asyncio.create_task(rec.run(stop))
    try:
        await eventually(lambda: _is(cron_in_db(pool), "0 * * * *"))
        # The rows are committed before the reconciler records what it applied (the applied
        # files, then its status): wait for the status too.
        await eventually(lambda: _true(rec.status.revision_id is not None))
        first = rec.status.revision_id
        assert rec.status.healthy

        (config / "venues" / "v.yaml").write_text(venue("*/5 * * * *"))
        await eventually(lambda: _is(cron_in_db(pool), "*/5 * * * *"))
        await eventually(lambda: _true(rec.status.revision_id != first))

        # A database edit is put back on SIGHUP even though no file changed.
        await pool.execute("UPDATE integration_configs SET enabled = false")
        os.kill(os.getpid(), signal.SIGHUP)
        await eventually(lambda: _is(pool.fetchval(
            "SELECT enabled FROM integration_configs"), True))
    finally:
        stop.set()
        await task


async def test_invalid_config_is_rejected_whole_and_the_last_good_one_stays(
        pool: asyncpg.Pool, plugins: Plugins, config: Path) -> None:
    rec = Reconciler(pool, plugins, config, poll_interval=0.05)
    assert await rec.reconcile_once()
    good = rec.status.revision_id
    (config / "venues" / "v.yaml").write_text(venue("*/5 * * * *"))
    (config / "venues" / "broken.yaml").write_text("venue: {id: nope, name: x, extra: 1}\n")
    with capture_logs() as logs:
        assert not await rec.reconcile_once()
    assert rec.status.revision_id == good
    assert rec.status.last_error is not None
    assert "broken.yaml:1:" in rec.status.last_error
    assert not rec.status.healthy
    assert rec.status.failures == 1
    invalid = [e for e in logs if e["event"] == "config.invalid"]
    assert {e["key"] for e in invalid} == {"venue.id", "venue.extra"}
    assert await cron_in_db(pool) == "0 * * * *"  # the valid edit was not applied either
    assert await pool.fetchval("SELECT count(*) FROM config_revisions") == 1

    (config / "venues" / "broken.yaml").unlink()
    assert await rec.reconcile_once()
    assert rec.status.last_error is None
    assert await cron_in_db(pool) == "*/5 * * * *"
    assert rec.status.as_dict()["revision_id"] == rec.status.revision_id != good


async def test_guard_refusal_is_reported_not_forced(
        pool: asyncpg.Pool, plugins: Plugins, config: Path) -> None:
    rec = Reconciler(pool, plugins, config)
    assert await rec.reconcile_once()
    (config / "venues" / "v.yaml").unlink()
    with capture_logs() as logs:
        assert not await rec.reconcile_once()
    assert "refusing to apply" in (rec.status.last_error or "")
    assert any(e["event"] == "config.apply_refused" for e in logs)
    assert await pool.fetchval("SELECT enabled FROM integration_configs") is True


async def test_status_reports_revision_in_force_from_before_the_process(
        pool: asyncpg.Pool, plugins: Plugins, config: Path) -> None:
    assert await Reconciler(pool, plugins, config).reconcile_once()
    fresh = Reconciler(pool, plugins, config)
    assert await fresh.reconcile_once()  # nothing to change
    assert fresh.status.revision_id is not None


async def _is(value: Awaitable[object], expected: object) -> bool:
    return await value == expected


async def _true(value: bool) -> bool:
    return value


async def test_status_metrics_and_readiness(pool: asyncpg.Pool, plugins: Plugins,
                                            config: Path) -> None:
    rec = Reconciler(pool, plugins, config)
    assert not rec.status.ready
    assert rec.status.metrics()["syncd_config_revision"] == 0.0
    assert await rec.reconcile_once()
    assert rec.status.ready
    metrics = rec.status.metrics()
    assert metrics["syncd_config_revision"] == float(rec.status.revision_id or -1)
    assert metrics["syncd_config_healthy"] == 1.0
    assert metrics["syncd_config_reconcile_attempts_total"] == 1.0


async def test_shutdown_during_the_load_applies_nothing(
        pool: asyncpg.Pool, plugins: Plugins, config: Path) -> None:
    rec = Reconciler(pool, plugins, config)
    stop = asyncio.Event()
    stop.set()  # SIGTERM arrived while the files were being read
    with capture_logs() as logs:
        assert not await rec.reconcile_once(stop)
    assert any(e["event"] == "config.reconcile_interrupted" for e in logs)
    assert await pool.fetchval("SELECT count(*) FROM config_revisions") == 0
    assert await pool.fetchval("SELECT count(*) FROM integration_configs") == 0
