"""``syncd run`` as an operator and systemd run it: migrations, readiness and leadership,
the notify protocol, signals, and a prompt exit with 10,000 configured venues."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from daemon.queue import Job, JobContext, JobResult, Outcome
from daemon.testing.venues import generate_venues

ROOT = Path(__file__).resolve().parents[2]
SYNCD = str(Path(sys.executable).parent / "syncd")


async def slow_handler(job: Job, ctx: JobContext) -> JobResult:
    """A job that runs until cancelled (a sync in flight)."""
    while not ctx.cancelled:
        await asyncio.sleep(0.05)
    return JobResult(Outcome.RETRY, "cancelled")


class Daemon:
    """One ``syncd run`` subprocess logging JSON to a file."""

    def __init__(self, db_url: str, tmp: Path, *args: str, env: dict[str, str] | None = None,
                 name: str = "run") -> None:
        base = {k: v for k, v in os.environ.items()
                if not k.startswith("SYNCD_") and k not in ("DATABASE_URL", "NOTIFY_SOCKET")}
        base.update({"PYTHONPATH": str(ROOT), "SYNCD_DATABASE_URL": db_url,
                     "SYNCD_LOG_FORMAT": "json", "SYNCD_LOG_LEVEL": "info",
                     "SYNCD_CONFIG_DIR": str(tmp / "config"),
                     "SYNCD_QUEUE_POLL_SECONDS": "0.5", "SYNCD_SCHEDULER_POLL_SECONDS": "1",
                     "SYNCD_LEADER_RETRY_SECONDS": "0.5"})
        base.update(env or {})
        self.log = tmp / f"{name}.log"
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen([SYNCD, "run", "--port", "0", *args], env=base,
                                         cwd=tmp, stdout=out, stderr=subprocess.STDOUT)

    def events(self) -> list[dict[str, Any]]:
        out = []
        for line in self.log.read_text(errors="replace").splitlines():
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if isinstance(event, dict):
                out.append(event)
        return out

    def named(self, name: str) -> list[dict[str, Any]]:
        return [e for e in self.events() if e.get("event") == name]

    def wait_for(self, check: Callable[[], Any], what: str, timeout: float = 90) -> Any:
        deadline = time.monotonic() + timeout
        while True:
            value = check()
            if value:
                return value
            assert self.proc.poll() is None, f"exited while waiting for {what}:\n{self.tail()}"
            assert time.monotonic() < deadline, f"timed out waiting for {what}:\n{self.tail()}"
            time.sleep(0.05)

    def url(self) -> str:
        ready = self.wait_for(lambda: self.named("run.ready"), "run.ready")
        return str(ready[0]["url"])

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-4000:]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


@pytest.fixture
def daemons(db_url: str, tmp_path: Path) -> Iterator[Callable[..., Daemon]]:
    started: list[Daemon] = []
    shutil.copytree(ROOT / "config", tmp_path / "config")

    def start(*args: str, env: dict[str, str] | None = None, name: str = "run") -> Daemon:
        daemon = Daemon(db_url, tmp_path, *args, env=env, name=name)
        started.append(daemon)
        return daemon

    yield start
    for daemon in started:
        daemon.stop()


def _get(url: str) -> tuple[int, dict[str, Any]]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:  # noqa: S310 - loopback
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_pending_migrations_refuse_the_start_unless_told_to_migrate(
        empty_db_url: str, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SYNCD_")}
    env.update({"SYNCD_DATABASE_URL": empty_db_url, "SYNCD_LOG_FORMAT": "json",
                "SYNCD_CONFIG_DIR": str(ROOT / "config")})
    refused = subprocess.run([SYNCD, "run", "--port", "0"], env=env, capture_output=True,
                             text=True, timeout=60, check=False)
    assert refused.returncode == 1
    errors = [line for line in refused.stderr.splitlines() if line.startswith("syncd: error")]
    assert len(errors) == 1, refused.stderr
    assert "migration(s) pending" in errors[0]
    assert "--migrate" in errors[0]
    assert "Traceback" not in refused.stderr


def test_run_serves_leads_reconciles_and_stops_cleanly(
        daemons: Callable[..., Daemon], db_url: str) -> None:
    daemon = daemons(env={"SYNCD_HEALTH_INTERVAL_SECONDS": "0.5"})
    url = daemon.url()
    daemon.wait_for(lambda: daemon.named("config.reconciled"), "the first reconcile")
    status, body = _get(url + "/readyz")
    assert (status, body["status"], body["leader"]) == (200, "ready", True)
    with urllib.request.urlopen(url + "/metrics", timeout=10) as response:  # noqa: S310
        assert "syncd_leader 1.0" in response.read().decode()
    # SIGHUP: the leader reconciles now.
    before = len(daemon.named("config.reconciled"))
    daemon.proc.send_signal(signal.SIGHUP)
    daemon.wait_for(lambda: len(daemon.named("config.reconciled")) > before,
                    "a reconcile after SIGHUP")
    assert daemon.named("run.reload_requested")[0]["leader"] is True
    daemon.wait_for(lambda: "unknown" not in asyncio.run(_health(db_url)),
                    "a health status for every enabled integration")
    daemon.proc.send_signal(signal.SIGTERM)
    assert daemon.proc.wait(60) == 0, daemon.tail()
    names = [e.get("event") for e in daemon.events()]
    assert names.index("run.stopping") < names.index("leader.resigned") < \
        names.index("run.stopped")
    # The health monitor (leader only) gave the config-managed integrations a health.
    rows = asyncio.run(_health(db_url))
    assert rows, rows
    assert "unknown" not in rows, rows


async def _health(db_url: str) -> list[str]:
    conn = await asyncpg.connect(db_url)
    try:
        return [r["health_status"] for r in await conn.fetch(
            "SELECT health_status FROM integration_configs WHERE enabled")]
    finally:
        await conn.close()


def test_systemd_notify_ready_watchdog_status_and_stopping(
        daemons: Callable[..., Daemon]) -> None:
    directory = tempfile.mkdtemp(prefix="sd")  # short: unix socket paths are limited
    path = os.path.join(directory, "notify")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(0.2)
    messages: list[dict[str, str]] = []

    def receive() -> None:
        while True:
            try:
                data = sock.recv(4096)
            except TimeoutError:
                return
            fields = dict(line.split("=", 1) for line in data.decode().splitlines())
            messages.append(fields)

    def seen(key: str) -> list[dict[str, str]]:
        receive()
        return [m for m in messages if key in m]

    try:
        daemon = daemons(env={"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "400000"})
        ready = daemon.wait_for(lambda: seen("READY"), "READY=1")
        assert ready[0]["READY"] == "1"
        assert ready[0]["MAINPID"] == str(daemon.proc.pid)
        assert ready[0]["STATUS"].startswith("serving on http://127.0.0.1:")
        # Heartbeats at half the watchdog interval: several within a second or two.
        daemon.wait_for(lambda: len(seen("WATCHDOG")) >= 3, "three WATCHDOG=1")
        daemon.wait_for(lambda: [m for m in seen("STATUS") if "as leader" in m["STATUS"]],
                        "a STATUS line saying it leads")
        daemon.proc.send_signal(signal.SIGTERM)
        assert daemon.proc.wait(60) == 0, daemon.tail()
        receive()
        stopping = [m for m in messages if "STOPPING" in m]
        assert stopping
        assert stopping[0]["STOPPING"] == "1"
        assert messages.index(ready[0]) < messages.index(stopping[0])
    finally:
        sock.close()
        shutil.rmtree(directory, ignore_errors=True)


def test_a_second_sigterm_exits_at_once_and_leaves_the_lease_to_expire(
        daemons: Callable[..., Daemon], db_url: str) -> None:
    daemon = daemons("--handler", f"{__name__}:slow_handler",
                     env={"SYNCD_WORKER_GRACE_SECONDS": "600",
                          "SYNCD_SCHEDULER_CATCHUP_SPREAD_SECONDS": "3600"})
    daemon.url()
    job_id = asyncio.run(_enqueue(db_url))
    daemon.wait_for(lambda: asyncio.run(_status(db_url, job_id)) == "processing",
                    "the job to be claimed")
    daemon.proc.send_signal(signal.SIGTERM)
    daemon.wait_for(lambda: daemon.named("run.stopping"), "the graceful shutdown to begin")
    # Draining: a job that never ends holds the process for its grace period (10 minutes).
    assert daemon.proc.poll() is None
    daemon.proc.send_signal(signal.SIGTERM)
    assert daemon.proc.wait(30) == 128 + signal.SIGTERM
    assert daemon.named("run.signal")[-1]["action"] == "exit now"
    # Nothing handed the job back: its lease runs out and another worker takes it.
    assert asyncio.run(_status(db_url, job_id)) == "processing"


async def _enqueue(db_url: str) -> int:
    from daemon.db import init_connection
    from daemon.queue import enqueue

    conn = await asyncpg.connect(db_url)
    try:
        await init_connection(conn)
        job_id = await enqueue(conn, venue_id=uuid.uuid4(), provider="stripe",
                               entity_type="customer")
        assert job_id is not None
        return job_id
    finally:
        await conn.close()


async def _status(db_url: str, job_id: int) -> str:
    conn = await asyncpg.connect(db_url)
    try:
        return str(await conn.fetchval("SELECT status FROM sync_queue WHERE id = $1", job_id))
    finally:
        await conn.close()


def test_idle_run_with_10000_venues_ends_its_duties_at_once_on_sigterm(
        daemons: Callable[..., Daemon], tmp_path: Path) -> None:
    shutil.rmtree(tmp_path / "config")
    generate_venues(tmp_path / "config", 10_000)
    daemon = daemons("--handler", "tests.acceptance.test_worker_shutdown:noop_handler",
                     env={"SYNCD_SCHEDULER_CATCHUP_SPREAD_SECONDS": "86400"})
    daemon.url()
    daemon.wait_for(lambda: daemon.named("config.reconciled"), "the first reconcile",
                    timeout=240)
    # The leader's first pass over 20,000 schedules is under way: SIGTERM mid-pass.
    daemon.wait_for(lambda: len(daemon.named("scheduler.tick_fired")) >= 50, "ticks firing")
    daemon.proc.send_signal(signal.SIGTERM)
    sent = time.monotonic()
    assert daemon.proc.wait(120) == 0, daemon.tail()
    took = time.monotonic() - sent
    fired = len(daemon.named("scheduler.tick_fired"))
    assert fired < 20_000, f"the pass ran to its end ({took:.1f}s after SIGTERM)"
    names = [e.get("event") for e in daemon.events()]
    assert "leader.resigned" in names
    assert "run.stopped" in names
    print(f"SIGTERM to exit: {took:.2f}s with {fired} of 20000 ticks fired")
