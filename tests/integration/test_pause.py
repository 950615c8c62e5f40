"""Pausing an integration: its jobs wait unclaimed, its schedules do not fire, `syncd sync`
refuses it, and a resume lets everything go again. The CLI as an operator types it."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import pytest

from daemon.cli import main
from daemon.config import load_config
from daemon.config.testing import SmallPlugin
from daemon.db import init_connection
from daemon.pause import pause, resume
from daemon.plugins import load_plugins
from daemon.queue import enqueue
from daemon.queue.claim import claim_jobs
from daemon.queue.lanes import LaneScheduler
from daemon.reconcile import apply_desired, fetch_actual, make_plan
from daemon.scheduler import Scheduler

VENUE = uuid.UUID("7a1d0c2e-0000-4000-8000-00000000000a")
OTHER = uuid.UUID("7a1d0c2e-0000-4000-8000-00000000000b")
NOW = datetime(2024, 3, 10, 12, 7, 30, tzinfo=UTC)
HOURLY = {"customer": {"cron": "0 * * * *", "lane": "NORMAL", "direction": "push"}}


async def _integrations(pool: asyncpg.Pool) -> None:
    for venue, name in ((VENUE, "The Laugh Track"), (OTHER, "Old Town Theatre")):
        await pool.execute(
            "INSERT INTO integration_configs (venue_id, provider, venue_name, schedules) "
            "VALUES ($1, 'square', $2, $3)", venue, name, HOURLY)


async def _claim(pool: asyncpg.Pool) -> list[uuid.UUID]:
    jobs = await claim_jobs(pool, owner="t", limit=10, lanes=LaneScheduler(), lease_seconds=60)
    return [job.venue_id for job in jobs]


async def test_a_paused_integrations_jobs_wait_unclaimed_until_it_resumes(
        pool: asyncpg.Pool) -> None:
    await _integrations(pool)
    for venue in (VENUE, OTHER):
        await enqueue(pool, venue_id=venue, provider="square", entity_type="customer")
    paused = await pause(pool, VENUE, "square", by="ops", reason="provider maintenance")
    assert paused is not None
    assert paused.changed

    assert await _claim(pool) == [OTHER]
    assert await _claim(pool) == []
    waiting = await pool.fetchrow("SELECT status, attempts, last_error FROM sync_queue "
                                  "WHERE venue_id = $1", VENUE)
    assert tuple(waiting) == ("pending", 0, None)  # skipped, not failed

    resumed = await resume(pool, VENUE, "square", by="ops")
    assert resumed is not None
    assert resumed.changed
    assert await _claim(pool) == [VENUE]


async def test_a_pause_blocks_the_claim_even_with_the_jobs_of_nothing_else_due(
        pool: asyncpg.Pool) -> None:
    await _integrations(pool)
    for entity in ("customer", "product", "transaction"):
        await enqueue(pool, venue_id=VENUE, provider="square", entity_type=entity,
                      lane="CRITICAL")
    await pause(pool, VENUE, "square", by="ops")
    assert await _claim(pool) == []
    assert await pool.fetchval("SELECT count(*) FROM sync_queue WHERE status = 'pending'") == 3


async def test_pausing_twice_keeps_the_first_pause_and_resuming_twice_changes_nothing(
        pool: asyncpg.Pool) -> None:
    await _integrations(pool)
    first = await pause(pool, VENUE, "square", by="alice", reason="first")
    again = await pause(pool, VENUE, "square", by="bob", reason="second")
    assert first is not None
    assert again is not None
    assert not again.changed
    assert (again.paused_at, again.paused_by, again.reason) == (
        first.paused_at, "alice", "first")
    assert await resume(pool, VENUE, "square", by="alice") is not None
    twice = await resume(pool, VENUE, "square", by="alice")
    assert twice is not None
    assert not twice.changed
    assert not twice.paused
    assert await pause(pool, uuid.uuid4(), "square", by="alice") is None


async def test_the_scheduler_fires_nothing_while_paused_and_catches_up_once_after(
        pool: asyncpg.Pool) -> None:
    await _integrations(pool)
    await pause(pool, VENUE, "square", by="ops")
    fired = await Scheduler(pool).fire_due(NOW)
    assert [f.integration_id for f in fired] == [
        await pool.fetchval("SELECT id FROM integration_configs WHERE venue_id = $1", OTHER)]
    await resume(pool, VENUE, "square", by="ops")
    later = await Scheduler(pool).fire_due(NOW + timedelta(hours=3))
    mine = [f for f in later if f.integration_id == await pool.fetchval(
        "SELECT id FROM integration_configs WHERE venue_id = $1", VENUE)]
    assert [f.tick for f in mine] == [datetime(2024, 3, 10, 15, 0, tzinfo=UTC)]


VENUE_YAML = """\
venue:
  id: {venue}
  name: The Laugh Track
  timezone: Europe/London
integrations:
  - provider: testprov
    credentials:
      api_key: env:TESTPROV_KEY
    schedules:
      product: {{cron: "{cron}", lane: HIGH}}
"""


async def test_a_config_apply_neither_lifts_nor_shows_a_pause(
        pool: asyncpg.Pool, tmp_path: Path) -> None:
    root = tmp_path / "config"
    (root / "venues").mkdir(parents=True)
    (root / "templates").mkdir()
    plugins = load_plugins([], extra=[("testprov", SmallPlugin())])
    venue_file = root / "venues" / "a.yaml"
    venue_file.write_text(VENUE_YAML.format(venue=VENUE, cron="*/15 * * * *"))
    async with pool.acquire() as conn:
        await apply_desired(conn, load_config(root, plugins))
    await pause(pool, VENUE, "testprov", by="ops", reason="audit")
    venue_file.write_text(VENUE_YAML.format(venue=VENUE, cron="*/5 * * * *"))
    async with pool.acquire() as conn:
        plan = make_plan(load_config(root, plugins), await fetch_actual(conn))
        assert [f.field for c in plan.changes for f in c.fields] == ["schedules.product.cron"]
        await apply_desired(conn, load_config(root, plugins))
    row = await pool.fetchrow("SELECT schedules, paused_by, pause_reason FROM "
                              "integration_configs WHERE venue_id = $1", VENUE)
    assert row["schedules"]["product"]["cron"] == "*/5 * * * *"
    assert (row["paused_by"], row["pause_reason"]) == ("ops", "audit")


# --- the command line ------------------------------------------------------------------------


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(["--log-level", "error", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def _db(db_url: str, sql: str, *args: object) -> object:
    async def go() -> object:
        conn = await asyncpg.connect(db_url)
        await init_connection(conn)
        try:
            return await conn.fetchval(sql, *args)
        finally:
            await conn.close()

    return asyncio.run(go())


def test_the_commands_pause_show_refuse_and_resume(
        db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SYNCD_DATABASE_URL", db_url)
    monkeypatch.setenv("SYNCD_LOG_FORMAT", "json")

    async def setup() -> None:
        pool = await asyncpg.create_pool(db_url, min_size=1, max_size=2, init=init_connection)
        try:
            await _integrations(pool)
            await enqueue(pool, venue_id=VENUE, provider="square", entity_type="customer")
        finally:
            await pool.close()

    asyncio.run(setup())

    code, out, _ = _run(capsys, "pause", "The Laugh Track", "square", "--reason",
                        "card reader swap")
    assert code == 0
    assert out.strip() == ("paused square for venue The Laugh Track: no new syncs start "
                           "until `syncd resume`; 1 queued job waits")
    assert _db(db_url, "SELECT pause_reason FROM integration_configs WHERE venue_id = $1",
               VENUE) == "card reader swap"

    code, out, _ = _run(capsys, "pause", str(VENUE), "square")
    assert code == 0
    assert out.startswith("square for venue The Laugh Track was already paused since ")

    code, out, _ = _run(capsys, "status")
    line = next(x for x in out.splitlines() if x.startswith("The Laugh Track"))
    assert "yes, paused since " in line
    other = next(x for x in out.splitlines() if x.startswith("Old Town Theatre"))
    assert "paused" not in other

    code, out, err = _run(capsys, "sync", "The Laugh Track", "square")
    assert code == 1
    assert err.strip().splitlines()[-1].startswith(
        "syncd: error: the square integration of venue The Laugh Track is paused (since ")
    assert "`syncd resume` first" in err
    assert "Traceback" not in err
    code, out, err = _run(capsys, "sync", "The Laugh Track", "square", "--dry-run")
    assert code == 1
    assert "is paused" in err

    code, out, _ = _run(capsys, "resume", "The Laugh Track", "square")
    assert code == 0
    assert out.strip() == "resumed square for venue The Laugh Track: 1 queued job can run now"
    code, out, _ = _run(capsys, "resume", "The Laugh Track", "square")
    assert out.strip() == "square for venue The Laugh Track was not paused"
    assert _db(db_url, "SELECT count(*) FROM integration_configs WHERE paused_at IS NOT NULL"
               ) == 0


@pytest.mark.parametrize(("argv", "message"), [
    (("pause", "Nowhere Hall", "square"), "syncd: error: no square integration for venue "
                                          "Nowhere Hall"),
    (("resume", str(uuid.uuid4()), "square"), "syncd: error: no square integration for venue"),
    (("pause", "The Laugh Track", "stripe"), "syncd: error: no stripe integration for venue"),
    (("pause", "The Laugh Track", "square", "--reason", "x" * 501),
     "syncd pause: error: argument --reason: the reason is longer than 500 characters"),
    (("pause", "The Laugh Track"), "syncd pause: error: the following arguments are required"),
])
def test_bad_arguments_are_one_clear_line_and_change_nothing(
        db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str], argv: tuple[str, ...], message: str) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SYNCD_DATABASE_URL", db_url)

    async def setup() -> None:
        pool = await asyncpg.create_pool(db_url, min_size=1, max_size=2, init=init_connection)
        try:
            await _integrations(pool)
        finally:
            await pool.close()

    asyncio.run(setup())
    try:
        code, _out, err = _run(capsys, *argv)
    except SystemExit as exc:
        code = int(exc.code or 0)
        _out, err = capsys.readouterr()
    assert code in (1, 2)
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(message), lines
    assert _db(db_url, "SELECT count(*) FROM integration_configs WHERE paused_at IS NOT NULL"
               ) == 0
