"""``syncd worker`` with a generated config of 10,000 venues: SIGTERM during the scheduler's
first pass (20,000 catch-up ticks) ends the pass and the process at once, not after it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import asyncpg

from daemon.config import load_config
from daemon.config.testing import SmallPlugin
from daemon.db import init_connection
from daemon.plugins import load_plugins
from daemon.queue import Job, JobContext, JobResult, Outcome
from daemon.reconcile import apply_desired
from daemon.testing.venues import generate_venues

ROOT = Path(__file__).resolve().parents[2]
SYNCD = str(Path(sys.executable).parent / "syncd")
VENUES = 10_000


async def noop_handler(job: Job, ctx: JobContext) -> JobResult:
    return JobResult(Outcome.COMPLETED)


def _generate(root: Path, venues: int) -> None:
    """Venue files as bench/reconcile.py generates them: two schedules per venue."""
    generate_venues(root, venues, provider="testprov", key_prefix="TESTPROV_KEY")


def _events(log: Path) -> list[dict[str, object]]:
    out = []
    for line in log.read_text().splitlines():
        try:
            out.append(json.loads(line))
        except ValueError:
            continue
    return out


async def test_sigterm_during_the_first_pass_of_10000_venues(db_url: str,
                                                             tmp_path: Path) -> None:
    _generate(tmp_path / "config", VENUES)
    plugins = load_plugins([], extra=[("small", SmallPlugin())])
    conn = await asyncpg.connect(db_url)
    try:
        await init_connection(conn)
        await apply_desired(conn, load_config(tmp_path / "config", plugins), force=True)
        assert await conn.fetchval("SELECT count(*) FROM integration_configs") == VENUES
    finally:
        await conn.close()

    env = {k: v for k, v in os.environ.items()
           if not k.startswith("SYNCD_") and k != "DATABASE_URL"}
    env.update({"PYTHONPATH": str(ROOT), "SYNCD_DATABASE_URL": db_url,
                "SYNCD_LOG_FORMAT": "json", "SYNCD_LOG_LEVEL": "info",
                "SYNCD_SCHEDULER_POLL_SECONDS": "1", "SYNCD_QUEUE_POLL_SECONDS": "0.5"})
    log = tmp_path / "worker.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [SYNCD, "worker", "--handler", f"{__name__}:noop_handler", "--owner", "w1"],
            env=env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 120
        while sum(1 for e in _events(log) if e.get("event") == "scheduler.tick_fired") < 50:
            assert proc.poll() is None, log.read_text()[-3000:]
            assert time.monotonic() < deadline, "the scheduler never fired a tick"
            time.sleep(0.1)
        proc.send_signal(signal.SIGTERM)
        sent = time.monotonic()
        assert proc.wait(120) == 0, log.read_text()[-3000:]
        took = time.monotonic() - sent
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    events = _events(log)
    interrupted = [e for e in events if e.get("event") == "scheduler.pass_interrupted"]
    assert len(interrupted) == 1, f"the pass ran to its end ({took:.1f}s after SIGTERM)"
    assert 0 < int(str(interrupted[0]["left"])) < VENUES
    assert any(e.get("event") == "scheduler.leader_resigned" for e in events)
    conn = await asyncpg.connect(db_url)
    try:
        fired = await conn.fetchval("SELECT count(*) FROM schedule_ticks")
        due_now = await conn.fetchval(
            "SELECT count(*) FROM sync_queue WHERE run_at <= now() - interval '1 second'")
    finally:
        await conn.close()
    assert 0 < fired < 2 * VENUES
    # Catch-up ticks are spread over the next five minutes, not all due at once.
    assert due_now < fired / 10
    print(f"SIGTERM to exit: {took:.2f}s with {fired} of {2 * VENUES} ticks fired")
    if os.environ.get("SHOW_LOG"):
        print(log.read_text()[-4000:])
