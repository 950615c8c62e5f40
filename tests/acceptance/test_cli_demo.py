"""The README's first command: ``syncd demo`` runs end to end against local emulators."""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import asyncpg
import pytest

from daemon.testing.postgres import TestDatabases, with_database
from tests.acceptance.conftest import Run

ROOT = Path(__file__).resolve().parents[2]
DEMO = ("demo", "--config", str(ROOT / "config"), "--events", "3", "--customers", "8",
        "--orders", "6")


@pytest.fixture(autouse=True)
def _drop_the_demo_database(db_url: str, test_databases: TestDatabases) -> Iterator[None]:
    """The demo re-creates ``<database>_demo`` next to the configured database and leaves
    it for the user to look at; the test drops it with the test's own."""
    yield
    name = urlsplit(db_url).path.lstrip("/")
    test_databases.give_back(with_database(db_url, f"{name}_demo"))


def _demo(syncd: Run, db_url: str, home: Path) -> subprocess.CompletedProcess[str]:
    return syncd("--log-level", "error", *DEMO, timeout=600,
                 env={"SYNCD_DATABASE_URL": db_url, "HOME": str(home)})


def _summary(stdout: str) -> str:
    """What the demo reports, without the parts that change from run to run (emulator
    ports; API calls, which count the 429s of a rate limit that follows the clock)."""
    text = re.sub(r"http://127\.0\.0\.1:\d+", "http://127.0.0.1:PORT", stdout)
    return re.sub(r" +\d+ API calls", " N API calls", text)


def test_demo_syncs_every_integration_then_sends_only_changes(
        syncd: Run, db_url: str, tmp_path: Path) -> None:
    out = _demo(syncd, db_url, tmp_path / "home")
    assert out.returncode == 0, out.stdout + out.stderr
    first, second = out.stdout.split("second sync", 1)
    synced = re.findall(r"^  (\w+)\s+completed", first, re.M)
    assert sorted(set(synced)) == ["mailchimp", "quickbooks", "square", "stripe"]
    assert "failed" not in re.sub(r"\d+ failed", "", out.stdout)
    # The second run sends the 3 changed buyers and 1 changed event per venue, nothing else.
    for line in re.findall(r"^  \w+\s+completed.*$", second, re.M):
        assert "0 created" in line
        assert re.search(r"customer: 8 read, 0 created, 3 updated, 5 unchanged", line), line
    assert re.search(r"stripe\s+\d+ products, 8 customers, 6 transactions", out.stdout)


def test_demo_run_twice_gives_the_same_result(syncd: Run, db_url: str, tmp_path: Path) -> None:
    home = tmp_path / "home"
    first = _demo(syncd, db_url, home)
    assert first.returncode == 0, first.stdout + first.stderr
    again = _demo(syncd, db_url, home)
    assert again.returncode == 0, again.stdout + again.stderr
    assert _summary(again.stdout) == _summary(first.stdout)
    # Every record is new to the fresh emulators both times.
    synced = re.findall(r"^  (\w+)\s+completed.*$", again.stdout.split("second sync")[0], re.M)
    assert synced
    for line in re.findall(r"^  \w+\s+completed.*$", again.stdout.split("second sync")[0], re.M):
        assert re.search(r"customer: 8 read, 8 created", line), line


async def test_demo_leaves_the_configured_database_alone(
        syncd: Run, db_url: str, tmp_path: Path) -> None:
    out = _demo(syncd, db_url, tmp_path / "home")
    assert out.returncode == 0, out.stdout + out.stderr
    conn = await asyncpg.connect(db_url)
    try:
        revisions = await conn.fetchval("SELECT count(*) FROM config_revisions")
        platform = await conn.fetchval("SELECT to_regclass('venues') IS NOT NULL")
    finally:
        await conn.close()
    assert (revisions, platform) == (0, False)
