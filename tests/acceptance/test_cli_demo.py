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
    return syncd(*DEMO, "--log-file", str(home.parent / "demo.log"), timeout=600,
                 env={"SYNCD_DATABASE_URL": db_url, "HOME": str(home)})


def _summary(stdout: str) -> str:
    """What the demo reports, without the parts that change from run to run (ports)."""
    return re.sub(r"http://127\.0\.0\.1:\d+", "http://127.0.0.1:PORT", stdout)


_LINE = re.compile(r"^  (\w+) +(.+?) +(completed|failed|no run) *(.*)$", re.M)


def test_demo_runs_the_daemon_on_every_integration_then_sends_only_changes(
        syncd: Run, db_url: str, tmp_path: Path) -> None:
    out = _demo(syncd, db_url, tmp_path / "home")
    assert out.returncode == 0, out.stdout + out.stderr
    first, second = out.stdout.split("second sync", 1)
    lines = _LINE.findall(first)
    # Every integration of the example config took part, file: references included, and
    # each QuickBooks venue has a company of its own: nothing adopted from the other.
    assert len(lines) == 8, first
    assert {p for p, _, _, _ in lines} == {"mailchimp", "quickbooks", "square", "stripe"}
    for provider, venue, status, counts in lines:
        assert status == "completed", (provider, venue, counts)
        assert "customer: 8 created, 0 updated, 0 failed" in counts, (provider, venue)
    assert re.search(r"^  stripe +a customer edited -> /webhooks/stripe/\S+: signature "
                     r"verified, stored, processed; 1 inbound change recorded$", out.stdout,
                     re.M)
    assert re.search(r"^  mailchimp +a member unsubscribed -> /webhooks/mailchimp/\S+: "
                     r"signature verified, stored, processed; 1 inbound change recorded; "
                     r"consent held for 1 member", out.stdout, re.M), out.stdout
    changed = _LINE.findall(second.split("records at the emulators")[0])
    assert len(changed) == 8
    for provider, venue, status, counts in changed:
        assert status == "completed", (provider, venue, counts)
        assert counts.count(" 0 created") == counts.count("created"), (provider, venue)
    assert sum("customer: 0 created, 3 updated" in c for _, _, _, c in changed) >= 6
    records = re.findall(r"^  \w+ .+? (\d+) products, (\d+) customers, (\d+) transactions",
                         out.stdout, re.M)
    assert records == [("3", "8", "6")] * 8
    log = tmp_path / "demo.log"
    assert log.exists()
    assert '"event": "run.ready"' in log.read_text()
    assert '"event"' not in out.stdout  # the log lines went to the file, not the screen


def test_demo_run_twice_gives_the_same_result(syncd: Run, db_url: str, tmp_path: Path) -> None:
    home = tmp_path / "home"
    first = _demo(syncd, db_url, home)
    assert first.returncode == 0, first.stdout + first.stderr
    again = _demo(syncd, db_url, home)
    assert again.returncode == 0, again.stdout + again.stderr
    assert _summary(again.stdout) == _summary(first.stdout)


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
