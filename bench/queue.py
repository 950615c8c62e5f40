"""Queue throughput: no-op jobs through syncd's queue, pgqueuer and procrastinate.

Each runs on the same Postgres, in the same event loop, in a scratch database of its own:
enqueue N jobs in bulk (enqueue rate), then drain them in one process in the peer's fast
configuration (completed jobs/s). syncd runs with all its guarantees on: leases with fencing
tokens, one running job per (venue, provider), weighted lanes, heartbeats and housekeeping.
Its jobs are spread over many integrations (one venue each), as a real deployment's are.

syncd and pgqueuer run in alternating rounds (``--rounds``, default 3), each round on a fresh
database, and the medians are reported: on a shared 2-core machine one run of either can be
a quarter off its neighbour. pgqueuer runs ``PGQUEUER_CONSUMERS`` queue managers with a
dequeue batch of 100 (the fastest of 1, 2 and 5 managers here; its own benchmark runs 5);
procrastinate runs one worker with ``PROCRASTINATE_CONCURRENCY`` concurrent jobs, one round
(it is two orders of magnitude slower). The event loop is uvloop when it is installed, as
the ``syncd`` command runs, else asyncio's own (``--loop`` picks).

Also measures syncd with several worker processes on one database (``--replicas``, default
2), as replicas of a deployment run: every job falls due at one moment, the rate runs from
then to the last completion (both read from Postgres), and every job must have run exactly
once. And lane shares under saturation: all four lanes full, the first quarter of the
jobs drained, each lane's share of them (the weights 8:4:2:1 ask for .533/.267/.133/.067).

    python -m bench.queue [--quick] [--rounds N] [--replicas N] [--loop auto|uvloop|asyncio]

The last line printed is a JSON object with syncd_jobs_per_s, pgqueuer_jobs_per_s,
procrastinate_jobs_per_s, ratio_vs_pgqueuer, ratio_vs_procrastinate, the enqueue rates, each
round's figures and the lane shares. Needs the ``bench`` extra: ``pip install -e '.[bench]'``.
"""

# Imports follow the import-path fix below.
# ruff: noqa: E402
from __future__ import annotations

import sys
from pathlib import Path

# This file is named like the standard library's ``queue``: take its folder off the import
# path (libraries import ``queue``), and put the repository on it instead.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]
sys.path.insert(0, str(_HERE.parent))

import argparse
import asyncio
import json
import statistics
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg

from daemon.db import open_pool
from daemon.loop import run_async
from daemon.queue import Job, JobContext, JobResult, NewJob, Outcome, enqueue_many
from daemon.testing.postgres import PostgresServer, find_server
from daemon.worker import Worker, WorkerConfig

CHUNK = 1000
# Worker configuration for the throughput run (one process).
BATCH = 100
CONCURRENCY = 200
#: Every syncd throughput run, one process or several: all guarantees on.
THROUGHPUT = WorkerConfig(concurrency=CONCURRENCY, batch_size=BATCH, poll_seconds=0.05,
                          lease_seconds=60, heartbeat_seconds=5)
# The peers' fast configurations (see the module docstring).
PGQUEUER_BATCH = 100
PGQUEUER_CONSUMERS = 2
PROCRASTINATE_CONCURRENCY = 10


def _rate(n: int, seconds: float) -> float:
    return round(n / seconds, 1) if seconds > 0 else 0.0


async def bench_syncd(url: str, n: int) -> dict[str, float]:
    pool = await open_pool(url, min_size=4, max_size=12)
    try:
        # The jobs are made before the clock starts, as the peers' inputs are.
        chunks = [[NewJob(venue_id=uuid.uuid4(), provider="bench", entity_type="noop")
                   for _ in range(min(CHUNK, n - start))] for start in range(0, n, CHUNK)]
        t0 = time.perf_counter()
        for chunk in chunks:
            await enqueue_many(pool, chunk)
        enqueue_s = time.perf_counter() - t0
        await pool.execute("ANALYZE sync_queue")

        done = 0
        worker: Worker

        async def noop(job: Job, ctx: JobContext) -> JobResult:
            nonlocal done
            done += 1
            if done >= n:
                worker.stop()
            return JobResult(Outcome.COMPLETED)

        worker = Worker(pool, noop, THROUGHPUT)
        t0 = time.perf_counter()
        await asyncio.wait_for(worker.run(), timeout=600)
        run_s = time.perf_counter() - t0
        completed = await pool.fetchval(
            "SELECT count(*) FROM sync_queue WHERE status = 'completed'")
        assert completed == n, f"syncd completed {completed} of {n}"
        return {"enqueue_per_s": _rate(n, enqueue_s), "jobs_per_s": _rate(n, run_s)}
    finally:
        await pool.close()


async def drain_replica(url: str) -> None:
    """One replica of the replicas run: a worker (full guarantees, housekeeping on) until
    nothing is left to run."""
    pool = await open_pool(url, min_size=4, max_size=12)
    try:
        async def noop(job: Job, ctx: JobContext) -> JobResult:
            return JobResult(Outcome.COMPLETED)

        worker = Worker(pool, noop, THROUGHPUT)

        async def until_drained() -> None:
            # The other replicas' progress is only in Postgres: look every 0.1 s.
            while True:
                left = await pool.fetchval(
                    "SELECT count(*) FROM sync_queue WHERE status <> 'completed'")
                if not left:
                    worker.stop()
                    return
                await asyncio.sleep(0.1)

        watch = asyncio.create_task(until_drained())
        await asyncio.wait_for(worker.run(), timeout=600)
        await watch
        print(json.dumps({"claimed": worker.claimed_total}), flush=True)
    finally:
        await pool.close()


async def bench_replicas(url: str, n: int, replicas: int, loop: str) -> dict[str, float]:
    """``replicas`` worker processes on one database, as a deployment runs them: every job
    falls due at one moment a few seconds ahead (so all processes are up), and the rate is
    n over the time from then to the last completion, both read from Postgres. Checks that
    every job ran exactly once."""
    pool = await open_pool(url, min_size=1, max_size=2)
    try:
        due = await pool.fetchval("SELECT now() + interval '5 seconds'")
        for start in range(0, n, CHUNK):
            await enqueue_many(pool, [
                NewJob(venue_id=uuid.uuid4(), provider="bench", entity_type="noop", run_at=due)
                for _ in range(min(CHUNK, n - start))])
        await pool.execute("ANALYZE sync_queue")
        procs = [await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bench.queue", "--drain", url, "--loop", loop,
            cwd=str(_HERE.parent), stdout=asyncio.subprocess.PIPE) for _ in range(replicas)]
        outs = await asyncio.wait_for(asyncio.gather(*(p.communicate() for p in procs)), 600)
        codes = [p.returncode for p in procs]
        assert codes == [0] * replicas, f"replica exit codes {codes}"
        claimed = [json.loads(out.decode().strip().splitlines()[-1])["claimed"]
                   for out, _ in outs]
        row = await pool.fetchrow(
            "SELECT count(*) FILTER (WHERE status = 'completed') AS completed, "
            "max(attempts) AS attempts, "
            "extract(epoch FROM max(completed_at) - $1::timestamptz)::float8 AS span "
            "FROM sync_queue", due)
        assert row["completed"] == n, f"replicas completed {row['completed']} of {n}"
        assert row["attempts"] == 1, "a job ran twice"
        assert sum(claimed) == n, f"replicas claimed {claimed}, {n} jobs"
        return {"replicas": replicas, "jobs_per_s": _rate(n, row["span"]),
                "claimed_by_replica": claimed}
    finally:
        await pool.close()


async def bench_lane_shares(url: str, per_lane: int) -> dict[str, float]:
    pool = await open_pool(url, min_size=4, max_size=12)
    lanes = ("CRITICAL", "HIGH", "NORMAL", "LOW")
    try:
        for lane in lanes:
            for start in range(0, per_lane, CHUNK):
                await enqueue_many(pool, [
                    NewJob(venue_id=uuid.uuid4(), provider="bench", entity_type="noop",
                           lane=lane)
                    for _ in range(min(CHUNK, per_lane - start))
                ])
        seen: Counter[str] = Counter()
        target = per_lane  # a quarter of all jobs: every lane still saturated at the end
        worker: Worker

        async def noop(job: Job, ctx: JobContext) -> JobResult:
            if sum(seen.values()) < target:
                seen[job.lane] += 1
            else:
                worker.stop()
            return JobResult(Outcome.COMPLETED)

        worker = Worker(pool, noop, WorkerConfig(concurrency=50, batch_size=10,
                                                 poll_seconds=0.05))
        await asyncio.wait_for(worker.run(), timeout=600)
        total = sum(seen.values())
        return {lane: round(seen[lane] / total, 3) for lane in lanes}
    finally:
        await pool.close()


async def bench_pgqueuer(url: str, n: int) -> dict[str, float]:
    from pgqueuer.db import AsyncpgDriver
    from pgqueuer.domain.types import QueueExecutionMode
    from pgqueuer.qm import QueueManager
    from pgqueuer.queries import Queries

    conns = [await asyncpg.connect(url) for _ in range(PGQUEUER_CONSUMERS)]
    try:
        queries = Queries(AsyncpgDriver(conns[0]))
        await queries.install()
        t0 = time.perf_counter()
        for start in range(0, n, CHUNK):
            size = min(CHUNK, n - start)
            await queries.enqueue(["noop"] * size, [None] * size, [0] * size)
        enqueue_s = time.perf_counter() - t0

        done = 0
        managers = []
        for conn in conns:
            qm = QueueManager(Queries(AsyncpgDriver(conn)))

            @qm.entrypoint("noop")
            async def noop(job: Any) -> None:
                nonlocal done
                done += 1

            managers.append(qm)

        t0 = time.perf_counter()
        await asyncio.wait_for(asyncio.gather(*(
            qm.run(batch_size=PGQUEUER_BATCH, mode=QueueExecutionMode.drain)
            for qm in managers)), timeout=600)
        run_s = time.perf_counter() - t0
        assert done == n, f"pgqueuer ran {done} of {n}"
        return {"enqueue_per_s": _rate(n, enqueue_s), "jobs_per_s": _rate(n, run_s)}
    finally:
        for conn in conns:
            await conn.close()


async def bench_procrastinate(url: str, n: int) -> dict[str, float]:
    import procrastinate

    app = procrastinate.App(connector=procrastinate.PsycopgConnector(conninfo=url))
    done = 0

    @app.task(name="noop")
    async def noop() -> None:
        nonlocal done
        done += 1

    async with app.open_async():
        await app.schema_manager.apply_schema_async()
        t0 = time.perf_counter()
        for start in range(0, n, CHUNK):
            await noop.batch_defer_async(*[{} for _ in range(min(CHUNK, n - start))])
        enqueue_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        await asyncio.wait_for(
            app.run_worker_async(concurrency=PROCRASTINATE_CONCURRENCY, wait=False,
                                 install_signal_handlers=False),
            timeout=600,
        )
        run_s = time.perf_counter() - t0
    assert done == n, f"procrastinate ran {done} of {n}"
    return {"enqueue_per_s": _rate(n, enqueue_s), "jobs_per_s": _rate(n, run_s)}


async def _in_scratch_db(server: PostgresServer, migrated: bool,
                         fn: Callable[[str], Awaitable[Any]]) -> Any:
    url = await server.create_database(migrated=migrated)
    try:
        return await fn(url)
    finally:
        await server.drop_database(url)


def _median(runs: list[dict[str, float]], key: str) -> float:
    return round(statistics.median(r[key] for r in runs), 1)


async def main(args: argparse.Namespace) -> int:
    n = args.jobs or (20_000 if args.quick else 100_000)
    n_procrastinate = max(1000, n // 10)
    per_lane = 2_000 if args.quick else 10_000

    import logging

    logging.getLogger("procrastinate").setLevel(logging.WARNING)
    logging.getLogger("pgqueuer").setLevel(logging.WARNING)
    from daemon.logs import configure_logging

    configure_logging("warning", "json")
    print(f"event loop: {type(asyncio.get_running_loop()).__module__}", flush=True)

    server = await find_server()
    syncd_runs: list[dict[str, float]] = []
    pgq_runs: list[dict[str, float]] = []
    try:
        for i in range(1, args.rounds + 1):
            syncd = await _in_scratch_db(server, True, lambda u: bench_syncd(u, n))
            syncd_runs.append(syncd)
            print(f"round {i} syncd:    {n} jobs, enqueue {syncd['enqueue_per_s']}/s, "
                  f"run {syncd['jobs_per_s']} jobs/s", flush=True)
            pgq = await _in_scratch_db(server, False, lambda u: bench_pgqueuer(u, n))
            pgq_runs.append(pgq)
            print(f"round {i} pgqueuer: {n} jobs, enqueue {pgq['enqueue_per_s']}/s, "
                  f"run {pgq['jobs_per_s']} jobs/s", flush=True)
        spread = await _in_scratch_db(
            server, True, lambda u: bench_replicas(u, n, args.replicas, args.loop))
        print(f"syncd, {args.replicas} worker processes: {n} jobs, run {spread['jobs_per_s']} "
              f"jobs/s, claimed per process {spread['claimed_by_replica']}", flush=True)
        proc = await _in_scratch_db(server, False,
                                    lambda u: bench_procrastinate(u, n_procrastinate))
        print(f"procrastinate: {n_procrastinate} jobs, enqueue {proc['enqueue_per_s']}/s, "
              f"run {proc['jobs_per_s']} jobs/s", flush=True)
        shares = await _in_scratch_db(server, True, lambda u: bench_lane_shares(u, per_lane))
        print(f"lane shares under saturation (weights 8:4:2:1): {shares}", flush=True)
    finally:
        await server.close()

    syncd_rate = _median(syncd_runs, "jobs_per_s")
    pgq_rate = _median(pgq_runs, "jobs_per_s")
    syncd_enqueue = _median(syncd_runs, "enqueue_per_s")
    pgq_enqueue = _median(pgq_runs, "enqueue_per_s")
    result = {
        "jobs": n,
        "rounds": args.rounds,
        "event_loop": type(asyncio.get_running_loop()).__module__,
        "syncd_jobs_per_s": syncd_rate,
        "pgqueuer_jobs_per_s": pgq_rate,
        "procrastinate_jobs_per_s": proc["jobs_per_s"],
        "ratio_vs_pgqueuer": round(syncd_rate / pgq_rate, 3),
        "ratio_vs_procrastinate": round(syncd_rate / proc["jobs_per_s"], 3),
        "round_ratios_vs_pgqueuer": [round(s["jobs_per_s"] / p["jobs_per_s"], 3)
                                     for s, p in zip(syncd_runs, pgq_runs, strict=True)],
        "syncd_replicas": spread,
        "syncd_enqueue_per_s": syncd_enqueue,
        "pgqueuer_enqueue_per_s": pgq_enqueue,
        "procrastinate_enqueue_per_s": proc["enqueue_per_s"],
        "enqueue_ratio_vs_pgqueuer": round(syncd_enqueue / pgq_enqueue, 3),
        "lane_shares": shares,
    }
    print(json.dumps(result))
    return 0


def run(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="small runs, under a minute")
    parser.add_argument("--jobs", type=int, default=None, help="jobs for syncd and pgqueuer")
    parser.add_argument("--rounds", type=int, default=3,
                        help="alternating syncd/pgqueuer rounds; medians reported")
    parser.add_argument("--loop", choices=("auto", "uvloop", "asyncio"), default="auto")
    parser.add_argument("--replicas", type=int, default=2,
                        help="worker processes sharing one queue in the replicas run")
    parser.add_argument("--drain", metavar="URL", help=argparse.SUPPRESS)  # one replica
    args = parser.parse_args(argv)
    if args.drain:
        run_async(drain_replica(args.drain), args.loop)
        return 0
    return run_async(main(args), args.loop)


if __name__ == "__main__":
    sys.exit(run())
