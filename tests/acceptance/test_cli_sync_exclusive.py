"""``syncd sync`` keeps the queue's rule: one run of an integration at a time."""

from __future__ import annotations

import asyncio
import os
import subprocess
import threading
import uuid
from typing import Any

import asyncpg

from daemon.db import init_connection
from daemon.queue import enqueue
from daemon.queue.claim import claim_jobs
from daemon.queue.lanes import LaneScheduler
from daemon.queue.types import Job
from tests.acceptance.conftest import SYNCD, Run
from tests.acceptance.test_cli_sync import ThreadedEmulator, _env, _setup, stripe

__all__ = ["stripe"]  # the fixture, shared with test_cli_sync


def _db(db_url: str, sql: str, *args: Any) -> Any:
    async def go() -> Any:
        conn = await asyncpg.connect(db_url)
        try:
            return await conn.fetch(sql, *args)
        finally:
            await conn.close()
    return asyncio.run(go())


def _worker_claims(db_url: str, venue: uuid.UUID) -> Job:
    """A worker elsewhere claims a job of the integration and is running it."""
    async def go() -> Job:
        conn = await asyncpg.connect(db_url)
        await init_connection(conn)
        try:
            await enqueue(conn, venue_id=venue, provider="stripe", entity_type="all")
            (job,) = await claim_jobs(conn, owner="replica-b", limit=1,
                                      lanes=LaneScheduler((8, 4, 2, 1)), lease_seconds=600)
            return job
        finally:
            await conn.close()
    return asyncio.run(go())


def _finish(db_url: str, job: Job) -> None:
    _db(db_url, "UPDATE sync_queue SET status = 'completed', completed_at = now(), "
        "lease_owner = NULL, lease_token = NULL, lease_expires_at = NULL WHERE id = $1", job.id)


def test_sync_refuses_while_a_worker_runs_the_integration(
        syncd: Run, db_url: str, stripe: ThreadedEmulator) -> None:
    venue = _setup(db_url, "stripe", {})
    env = _env(db_url, stripe)
    job = _worker_claims(db_url, venue)
    result = syncd("sync", str(venue), "stripe", env=env)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert lines[-1].startswith(f"syncd: error: a stripe sync of venue {venue} is running "
                                f"(job {job.id} on replica-b")
    assert "--wait" in lines[-1]
    assert "Traceback" not in result.stderr
    assert stripe.writes() == []
    # Once the worker's job is done, the command runs, as a job of the queue would.
    _finish(db_url, job)
    result = syncd("sync", str(venue), "stripe", env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert stripe.writes()
    (row,) = _db(db_url, "SELECT q.status, q.lease_owner, q.lease_token, l.status AS log "
                 "FROM sync_queue q JOIN sync_logs l ON l.job_id = q.id WHERE q.id <> $1",
                 job.id)
    assert (row["status"], row["lease_token"], row["log"]) == ("completed", None, "completed")


def test_sync_wait_runs_after_the_workers_job(
        db_url: str, stripe: ThreadedEmulator, tmp_path: Any) -> None:
    venue = _setup(db_url, "stripe", {}, customers=5, events=2, orders=2)
    job = _worker_claims(db_url, venue)
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("SYNCD_") and k != "DATABASE_URL"}
    env.update(_env(db_url, stripe), SYNCD_LOG_FORMAT="json", SYNCD_QUEUE_POLL_SECONDS="0.2",
               SYNCD_DATA_DIR=str(tmp_path / "pgdata"))
    proc = subprocess.Popen([SYNCD, "sync", str(venue), "stripe", "--wait"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines: list[str] = []
    waiting = threading.Event()

    def read_stderr() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            lines.append(line)
            if "sync.waiting" in line:
                waiting.set()

    reader = threading.Thread(target=read_stderr, daemon=True)
    reader.start()
    try:
        # It says it waits (however long a loaded machine takes to start it), and sends
        # nothing while the worker's job runs.
        assert waiting.wait(60), "".join(lines)
        assert proc.poll() is None
        assert stripe.writes() == []
        _finish(db_url, job)
        out, _ = proc.communicate(timeout=60)
        reader.join(10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    assert proc.returncode == 0, out + "".join(lines)
    assert stripe.writes()
