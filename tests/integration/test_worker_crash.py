"""``syncd worker`` in subprocesses: a worker killed with SIGKILL mid-job loses the job to
another worker, which completes it once; SIGTERM drains and exits cleanly."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import asyncpg

from daemon.queue import Job, JobContext, JobResult, NewJob, Outcome, enqueue, enqueue_many
from daemon.queue.claim import claim_jobs
from daemon.queue.lanes import LaneScheduler

ROOT = Path(__file__).resolve().parents[2]
SYNCD = str(Path(sys.executable).parent / "syncd")


async def recording_handler(job: Job, ctx: JobContext) -> JobResult:
    """Writes its result in its own transaction, fenced by the lease. With WORKER_HANG=1 it
    says so (outside that transaction) and then hangs before committing."""
    name = os.environ.get("WORKER_NAME", "?")
    async with ctx.pool.acquire() as conn, conn.transaction():
        await ctx.assert_lease(conn)
        await conn.execute("INSERT INTO results (job_id, owner) VALUES ($1, $2)", job.id, name)
        if os.environ.get("WORKER_HANG") == "1":
            await ctx.pool.execute("INSERT INTO started (owner) VALUES ($1)", name)
            await asyncio.sleep(3600)
    return JobResult(Outcome.COMPLETED)


async def timing_handler(job: Job, ctx: JobContext) -> JobResult:
    """Records when it ran, by the database's clock, for the overlap check below."""
    started = await ctx.pool.fetchval("SELECT clock_timestamp()")
    await asyncio.sleep(0.05)
    async with ctx.pool.acquire() as conn, conn.transaction():
        await ctx.assert_lease(conn)
        await conn.execute(
            "INSERT INTO runs (job_id, venue_id, owner, ran) "
            "VALUES ($1, $2, $3, tstzrange($4, clock_timestamp()))",
            job.id, job.venue_id, os.environ.get("WORKER_NAME", "?"), started)
    return JobResult(Outcome.COMPLETED)


async def completing_handler(job: Job, ctx: JobContext) -> JobResult:
    """Writes its result and completes the job in one transaction; with WORKER_HANG=1 it then
    hangs, after the commit, before it could return."""
    name = os.environ.get("WORKER_NAME", "?")
    async with ctx.pool.acquire() as conn, conn.transaction():
        await conn.execute("INSERT INTO results (job_id, owner) VALUES ($1, $2)", job.id, name)
        await ctx.complete(conn)
    if os.environ.get("WORKER_HANG") == "1":
        await ctx.pool.execute("INSERT INTO started (owner) VALUES ($1)", name)
        await asyncio.sleep(3600)
    return JobResult(Outcome.COMPLETED)


class _Workers:
    """``syncd worker`` subprocesses of one test, each logging to ``tmp_path/NAME.log``;
    any still running when the block ends are killed."""

    def __init__(self, db_url: str, tmp_path: Path, handler: str = "recording_handler"):
        self.db_url = db_url
        self.tmp_path = tmp_path
        self.handler = handler
        self.procs: list[subprocess.Popen[bytes]] = []

    def __enter__(self) -> _Workers:
        return self

    def __exit__(self, *exc: object) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)

    def log(self, name: str) -> str:
        return (self.tmp_path / f"{name}.log").read_text()

    def start(self, name: str, *, hang: bool,
              settings: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        env = {k: v for k, v in os.environ.items()
               if not k.startswith("SYNCD_") and k != "DATABASE_URL"}
        env.update({
            "PYTHONPATH": str(ROOT),
            "SYNCD_DATABASE_URL": self.db_url,
            "SYNCD_LOG_FORMAT": "json",
            "SYNCD_QUEUE_LEASE_SECONDS": "2",
            "SYNCD_QUEUE_HEARTBEAT_SECONDS": "0.5",
            "SYNCD_QUEUE_POLL_SECONDS": "0.2",
            "SYNCD_SCHEDULER_POLL_SECONDS": "0.5",
            # A hung job is handed back once the grace period is over: 1 s is what a SIGTERM
            # with a hung job costs (no job runs when the other tests stop their workers).
            "SYNCD_WORKER_GRACE_SECONDS": "1",
            "WORKER_NAME": name,
            "WORKER_HANG": "1" if hang else "0",
            **(settings or {}),
        })
        with (self.tmp_path / f"{name}.log").open("wb") as out:
            proc = subprocess.Popen(
                [SYNCD, "worker", "--handler", f"{__name__}:{self.handler}", "--owner", name],
                env=env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT,
            )
        self.procs.append(proc)
        return proc

    @staticmethod
    def kill(proc: subprocess.Popen[bytes]) -> None:
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)

    def stop(self, proc: subprocess.Popen[bytes], name: str) -> None:
        """SIGTERM; the worker must exit 0."""
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0, self.log(name)


async def _one_job(conn: asyncpg.Connection) -> int:
    """The tables the handlers write, and one job."""
    await conn.execute("CREATE TABLE results (job_id bigint, owner text)")
    await conn.execute("CREATE TABLE started (owner text)")
    job_id = await enqueue(conn, venue_id=uuid.uuid4(), provider="square",
                           entity_type="products")
    assert job_id is not None
    return job_id


async def _wait_for(conn: asyncpg.Connection, sql: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not await conn.fetchval(sql):
        assert time.monotonic() < deadline, f"timed out waiting for: {sql}"
        await asyncio.sleep(0.1)


async def _wait_until(condition: Callable[[], bool], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.1)


async def test_a_killed_workers_job_is_reclaimed_and_completed_once(
    conn: asyncpg.Connection, db_url: str, tmp_path: Path
) -> None:
    job_id = await _one_job(conn)
    with _Workers(db_url, tmp_path) as workers:
        first = workers.start("first", hang=True)
        await _wait_for(conn, "SELECT count(*) > 0 FROM started")
        workers.kill(first)
        assert await conn.fetchval("SELECT lease_owner FROM sync_queue") == "first"
        second = workers.start("second", hang=False)
        await _wait_for(conn, "SELECT status = 'completed' FROM sync_queue")
        workers.stop(second, "second")
    assert await conn.fetch("SELECT job_id, owner FROM results") == [(job_id, "second")]
    row = await conn.fetchrow("SELECT attempts, error_kind, last_error FROM sync_queue")
    assert row["attempts"] == 2
    assert row["error_kind"] == "lease"
    assert "first" in row["last_error"]


async def test_a_job_completed_in_its_handlers_transaction_is_not_run_again(
    conn: asyncpg.Connection, db_url: str, tmp_path: Path
) -> None:
    # The worker dies after the handler's transaction committed and before it could report:
    # without the completion in that transaction, the job would be reclaimed and run twice.
    job_id = await _one_job(conn)
    with _Workers(db_url, tmp_path, handler="completing_handler") as workers:
        first = workers.start("first", hang=True)
        await _wait_for(conn, "SELECT count(*) > 0 FROM started")
        workers.kill(first)
        # A sentinel job held by a vanished worker whose lease runs out after the first
        # worker's would have: once the second worker has reclaimed and run it, a reclaim
        # has passed over everything that expired before it.
        sentinel = await enqueue(conn, venue_id=uuid.uuid4(), provider="square",
                                 entity_type="products")
        [held] = await claim_jobs(conn, owner="ghost", limit=1, lanes=LaneScheduler(),
                                  lease_seconds=3)
        assert held.id == sentinel
        second = workers.start("second", hang=False)
        await _wait_for(conn, f"SELECT count(*) > 0 FROM results WHERE job_id = {sentinel}")
        workers.stop(second, "second")
    assert await conn.fetch("SELECT job_id, owner FROM results ORDER BY job_id") == [
        (job_id, "first"), (sentinel, "second")]
    row = await conn.fetchrow("SELECT status, attempts, error_kind FROM sync_queue "
                              "WHERE id = $1", job_id)
    assert tuple(row) == ("completed", 1, None)


async def test_sigterm_releases_jobs_that_outlast_the_grace_period(
    conn: asyncpg.Connection, db_url: str, tmp_path: Path
) -> None:
    await _one_job(conn)
    with _Workers(db_url, tmp_path) as workers:
        proc = workers.start("w", hang=True)
        await _wait_for(conn, "SELECT count(*) > 0 FROM started")
        workers.stop(proc, "w")
    row = await conn.fetchrow("SELECT status, attempts, lease_token FROM sync_queue")
    assert tuple(row) == ("pending", 0, None)
    assert await conn.fetchval("SELECT count(*) FROM results") == 0
    assert "worker.released" in workers.log("w")


async def test_the_worker_schedules_and_runs_cron_ticks(
    conn: asyncpg.Connection, db_url: str, tmp_path: Path
) -> None:
    await conn.execute("CREATE TABLE results (job_id bigint, owner text)")
    await conn.execute(
        "INSERT INTO integration_configs (venue_id, provider, timezone, schedules) "
        "VALUES ($1, 'square', 'Australia/Sydney', $2)",
        uuid.uuid4(), {"products": {"cron": "* * * * *", "lane": "HIGH"}},
    )
    with _Workers(db_url, tmp_path) as workers:
        # The minute's tick is missed (older than two polls) unless the worker starts
        # within its first seconds: with no catch-up spread it runs at once, instead of
        # at a random point of the next 300 s or at the next minute's tick.
        proc = workers.start("cron", hang=False,
                             settings={"SYNCD_SCHEDULER_CATCHUP_SPREAD_SECONDS": "0"})
        await _wait_for(conn, "SELECT count(*) > 0 FROM sync_queue WHERE status = 'completed'")
        workers.stop(proc, "cron")
    job = await conn.fetchrow("SELECT * FROM sync_queue ORDER BY id LIMIT 1")
    assert (job["entity_type"], job["lane"], job["payload"]["trigger"]) == (
        "products", "HIGH", "schedule")
    assert await conn.fetchval("SELECT job_id FROM schedule_ticks ORDER BY tick LIMIT 1") \
        == job["id"]
    assert await conn.fetchval("SELECT owner FROM results WHERE job_id = $1", job["id"]) \
        == "cron"


async def test_two_worker_processes_share_the_queue_without_double_work(
    conn: asyncpg.Connection, db_url: str, tmp_path: Path
) -> None:
    await conn.execute("CREATE TABLE runs (job_id bigint, venue_id uuid, owner text, "
                       "ran tstzrange)")
    venues = [uuid.uuid4() for _ in range(20)]
    with _Workers(db_url, tmp_path, handler="timing_handler") as workers:
        # Two jobs at a time each, so one process alone would need 3 s for all of them.
        procs = [workers.start(name, hang=False, settings={"SYNCD_WORKER_CONCURRENCY": "2"})
                 for name in ("one", "two")]
        for name in ("one", "two"):
            await _wait_until(lambda name=name: "worker.started" in workers.log(name))
        # Six jobs per integration: only one of them may run at a time, whichever process.
        await enqueue_many(conn, [NewJob(venue_id=v, provider="square", entity_type=f"e{i}")
                                  for v in venues for i in range(6)])
        await _wait_for(conn, "SELECT bool_and(status = 'completed') FROM sync_queue")
        for proc, name in zip(procs, ("one", "two"), strict=True):
            workers.stop(proc, name)
    assert await conn.fetchval("SELECT count(*) FROM runs") == 120
    assert await conn.fetchval("SELECT count(DISTINCT job_id) FROM runs") == 120
    assert await conn.fetchval("SELECT max(attempts) FROM sync_queue") == 1
    overlapping = await conn.fetchval(
        "SELECT count(*) FROM runs a JOIN runs b ON a.venue_id = b.venue_id "
        "AND a.job_id < b.job_id AND a.ran && b.ran")
    assert overlapping == 0
    assert await conn.fetchval("SELECT count(DISTINCT owner) FROM runs") == 2
