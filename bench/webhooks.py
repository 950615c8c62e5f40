"""Webhook ingest: signed deliveries at concurrency 64 over loopback, durable against bare.

Two servers, each in a process of its own on 127.0.0.1, measured by one load generator in
this process, in alternating rounds (``--rounds``), medians reported:

- **bare**: an aiohttp app whose handler reads the body and answers 200 JSON, nothing else
  (the ceiling an aiohttp server on this machine reaches);
- **durable**: syncd's HTTP app (``daemon.http.create_app``), on a scratch database: each
  Square delivery (distinct event ids) has its signature verified by the plugin, its body
  checked, and is stored in ``integration_webhooks`` with its processing job queued, in
  group commits, and answered only after its commit.

Both servers get the same request limits and the same event loop (uvloop when installed,
as the ``syncd`` command runs; ``--loop`` picks). The load generator keeps 64 requests in
flight for a fixed time per round after a warm-up, and records each request's latency.

    python -m bench.webhooks [--quick] [--rounds N] [--seconds S] [--concurrency C]
                             [--against GIT_REF]

``--against GIT_REF`` measures a third server in the same rounds: the durable app as it is
at that git revision (exported with ``git archive`` and run from there, on a database of its
own), so that a change to the durable path is compared with what it replaces under the same
load on a shared machine; the rounds alternate which of the two goes first.

The last line printed is a JSON object with bare_rps, durable_rps, ratio (durable/bare),
durable_p99_ms, bare_p99_ms, durable_p50_ms, the CPU time spent per request by each server
process and by the Postgres backends serving it (read from /proc over the measured seconds:
steadier than requests per second on a shared machine, as it counts work, not waiting),
each round's figures, the rows stored, and the load average at start and end (the machine
may be shared: figures are provisional); with
``--against``, ``against`` holds the same figures for that revision and ``speedup`` is
durable_rps over its durable_rps.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from daemon.loop import run_async
from daemon.testing.postgres import find_server
from plugins.square.webhooks import SIGNATURE_HEADER, sign

KEY = "bench-square-signature-key"
BASE = "https://syncd.example"
PATH = "/webhooks/square"


def _body(n: int, run: str) -> bytes:
    event = {
        "merchant_id": "MLBENCH0001", "type": "customer.updated",
        "event_id": f"{run}-{n}", "created_at": "2026-01-01T00:00:00Z",
        "data": {"type": "customer", "id": f"CUST{n}", "object": {"customer": {
            "id": f"CUST{n}", "given_name": "Ada", "family_name": "Lovelace",
            "email_address": f"buyer{n}@example.com", "version": n}}},
    }
    return json.dumps(event, separators=(",", ":")).encode()


# --- servers (child processes) ----------------------------------------------------------


async def _serve(mode: str, db_url: str | None) -> None:
    from daemon.http import create_app
    from daemon.http.secrets import ReferenceWebhookSecrets
    from daemon.http.server import listening
    from daemon.logs import configure_logging
    from daemon.plugins import load_plugins
    from daemon.settings import Settings

    configure_logging("error", "json")
    settings = Settings(webhook_secrets={"square": KEY}, public_base_url=BASE,
                        db_pool_max_size=8)
    pool = None
    if mode == "bare":
        async def bare(request: web.Request) -> web.Response:
            await request.read()
            return web.json_response({"status": "stored"})

        app = web.Application(client_max_size=settings.webhook_max_body_bytes)
        app.router.add_post(PATH, bare)
    else:
        from daemon.db import open_pool

        assert db_url is not None
        pool = await open_pool(db_url, min_size=2, max_size=8)
        app = create_app(pool=pool, providers=dict(load_plugins().providers),
                         settings=settings, secrets=ReferenceWebhookSecrets(pool))
    async with listening(app, settings, host="127.0.0.1", port=0) as url:
        print(url, flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    if pool is not None:
        await pool.close()


ROOT = Path(__file__).resolve().parent.parent


def _start(mode: str, db_url: str | None, loop: str,
           tree: Path = ROOT) -> tuple[subprocess.Popen[str], str]:
    """A server process of ``mode``, run from the source ``tree`` (a checkout of syncd)."""
    args = [sys.executable, "-m", "bench.webhooks", "--serve", mode, "--loop", loop]
    if db_url:
        args += ["--db", db_url]
    env = {**os.environ, "PYTHONPATH": str(tree)}
    proc = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                            cwd=tree, env=env)
    assert proc.stdout is not None
    url = proc.stdout.readline().strip()
    if not url.startswith("http://"):
        proc.kill()
        raise SystemExit(f"the {mode} server did not start")
    return proc, url


def _stop(proc: subprocess.Popen[str]) -> None:
    assert proc.stdin is not None
    proc.stdin.close()
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


# --- load generator ---------------------------------------------------------------------


# --- CPU spent per request (Linux): steadier than req/s on a machine shared with others ---


_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _cpu_seconds(pid: int) -> float:
    """User and system CPU seconds ``pid`` has used so far (0 when it cannot be read)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / _TICK


async def _backends(db_url: str | None) -> list[int]:
    """The Postgres backends connected to ``db_url``'s database (the server's pool)."""
    if db_url is None:
        return []
    import asyncpg

    conn = await asyncpg.connect(db_url)
    try:
        rows = await conn.fetch("SELECT pid FROM pg_stat_activity WHERE datname = "
                                "current_database() AND pid <> pg_backend_pid()")
    finally:
        await conn.close()
    return [int(r["pid"]) for r in rows]


class CpuMeter:
    """CPU used by a server process and its database backends between two samples."""

    def __init__(self, pid: int, db_url: str | None) -> None:
        self.pid = pid
        self.db_url = db_url
        self._start: dict[int, float] = {}
        self.server_s = 0.0
        self.database_s = 0.0

    async def start(self) -> None:
        self._start = {pid: _cpu_seconds(pid) for pid in await _backends(self.db_url)}
        self._start[self.pid] = _cpu_seconds(self.pid)

    async def stop(self) -> None:
        pids = set(await _backends(self.db_url)) | set(self._start)
        used = {pid: _cpu_seconds(pid) - self._start.get(pid, 0.0) for pid in pids}
        self.server_s = used.pop(self.pid, 0.0)
        self.database_s = sum(v for v in used.values() if v > 0)


async def _commits(session: aiohttp.ClientSession, url: str) -> tuple[float, float] | None:
    """Deliveries stored and group commits made so far, from the server's /metrics (None
    for a server without them)."""
    async with session.get(url + "/metrics") as response:
        if response.status != 200:
            return None
        text = await response.text()
    values = {}
    for line in text.splitlines():
        name, _, value = line.partition(" ")
        if name in ("syncd_webhook_commit_deliveries_sum",
                    "syncd_webhook_commit_deliveries_count"):
            values[name] = float(value)
    if len(values) != 2:
        return None
    return (values["syncd_webhook_commit_deliveries_sum"],
            values["syncd_webhook_commit_deliveries_count"])


async def _load(url: str, seconds: float, concurrency: int,
                warmup: float, meter: CpuMeter | None = None) -> dict[str, Any]:
    run = uuid.uuid4().hex[:12]
    counter = iter(range(10**9))
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    target = url + PATH
    connector = aiohttp.TCPConnector(limit=concurrency, force_close=False)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def one(record: bool) -> None:
            body = _body(next(counter), run)
            headers = {"Content-Type": "application/json",
                       SIGNATURE_HEADER: sign(body, BASE + PATH, KEY)}
            started = time.perf_counter()
            async with session.post(target, data=body, headers=headers) as response:
                await response.read()
                status = response.status
            if record:
                latencies.append(time.perf_counter() - started)
                statuses[status] = statuses.get(status, 0) + 1

        async def worker(deadline: float, record: bool) -> None:
            while time.perf_counter() < deadline:
                await one(record)

        end = time.perf_counter() + warmup
        await asyncio.gather(*(worker(end, False) for _ in range(concurrency)))
        commits_before = await _commits(session, url)
        if meter is not None:
            await meter.start()
        started = time.perf_counter()
        await asyncio.gather(*(worker(started + seconds, True) for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
        if meter is not None:
            await meter.stop()
        commits_after = await _commits(session, url)
    latencies.sort()

    def pct(q: float) -> float:
        return round(latencies[min(len(latencies) - 1, int(q * len(latencies)))] * 1000, 2)

    result: dict[str, Any] = {"requests": len(latencies),
                              "rps": round(len(latencies) / elapsed, 1),
                              "p50_ms": pct(0.50), "p99_ms": pct(0.99), "statuses": statuses}
    if commits_before is not None and commits_after is not None:
        rows = commits_after[0] - commits_before[0]
        commits = commits_after[1] - commits_before[1]
        result["deliveries_per_commit"] = round(rows / commits, 1) if commits else None
    if meter is not None and latencies:
        # Requests still in flight at the end are counted in CPU, not in requests: a bias
        # of at most concurrency/requests, the same for every server.
        result["server_cpu_us"] = round(meter.server_s / len(latencies) * 1e6, 1)
        result["database_cpu_us"] = round(meter.database_s / len(latencies) * 1e6, 1)
    return result


async def _stored(db_url: str) -> int:
    import asyncpg

    conn = await asyncpg.connect(db_url)
    try:
        return int(await conn.fetchval("SELECT count(*) FROM integration_webhooks"))
    finally:
        await conn.close()


def _export(ref: str, into: Path) -> Path:
    """The source tree of git revision ``ref``, exported under ``into``."""
    tree = into / "tree"
    tree.mkdir()
    archive = subprocess.run(["git", "archive", "--format=tar", ref], cwd=ROOT,
                             capture_output=True, check=False)
    if archive.returncode != 0:
        raise SystemExit(f"git archive {ref}: {archive.stderr.decode().strip()}")
    subprocess.run(["tar", "-x", "-C", str(tree)], input=archive.stdout, check=True)
    return tree


def _median(runs: list[dict[str, Any]], key: str) -> float:
    return float(statistics.median(r[key] for r in runs))


def _median_of(runs: list[dict[str, Any]], key: str) -> float | None:
    values = [r[key] for r in runs if key in r]
    return round(float(statistics.median(values)), 1) if values else None


def _cpu_figures(runs: dict[str, list[dict[str, Any]]], name: str) -> dict[str, Any]:
    """Median CPU per request of a durable server and its database backends."""
    return {"durable_server_cpu_us": _median_of(runs[name], "server_cpu_us"),
            "durable_database_cpu_us": _median_of(runs[name], "database_cpu_us")}


async def main(args: argparse.Namespace) -> int:
    seconds = args.seconds or (5.0 if args.quick else 15.0)
    rounds = args.rounds or (2 if args.quick else 3)
    warmup = 1.0 if args.quick else 3.0
    load_start = os.getloadavg()
    print(f"event loop: {type(asyncio.get_running_loop()).__module__}, load average "
          f"{load_start[0]:.2f}", flush=True)
    scratch = tempfile.TemporaryDirectory(prefix="syncd-bench-")
    old_tree = _export(args.against, Path(scratch.name)) if args.against else None
    server = await find_server()
    db_url = await server.create_database()
    old_db = await server.create_database() if old_tree else None
    runs: dict[str, list[dict[str, Any]]] = {"bare": [], "durable": [], "against": []}
    try:
        for i in range(1, rounds + 1):
            durables = [("durable", db_url, ROOT)]
            if old_tree is not None:
                old = ("against", old_db, old_tree)
                durables = [old, *durables] if i % 2 else [*durables, old]
            for name, db, tree in [("bare", None, ROOT), *durables]:
                mode = "bare" if name == "bare" else "durable"
                proc, url = _start(mode, db, args.loop, tree)
                try:
                    result = await _load(url, seconds, args.concurrency, warmup,
                                         CpuMeter(proc.pid, db))
                finally:
                    _stop(proc)
                runs[name].append(result)
                label = f"durable@{args.against}" if name == "against" else name
                cpu = (f", CPU/request: server {result['server_cpu_us']} us, database "
                       f"{result['database_cpu_us']} us" if "server_cpu_us" in result else "")
                if result.get("deliveries_per_commit"):
                    cpu += f", {result['deliveries_per_commit']} deliveries/commit"
                print(f"round {i} {label:8s} {result['requests']} requests, {result['rps']} "
                      f"req/s, p50 {result['p50_ms']} ms, p99 {result['p99_ms']} ms, "
                      f"statuses {result['statuses']}{cpu}", flush=True)
        stored = await _stored(db_url)
    finally:
        await server.drop_database(db_url)
        if old_db is not None:
            await server.drop_database(old_db)
        await server.close()
        scratch.cleanup()
    bare_runs, durable_runs = runs["bare"], runs["durable"]
    bare = statistics.median(r["rps"] for r in bare_runs)
    durable = statistics.median(r["rps"] for r in durable_runs)
    answered_200 = sum(r["statuses"].get(200, 0) for r in durable_runs)
    load_end = os.getloadavg()
    result = {
        "bare_rps": round(bare, 1),
        "durable_rps": round(durable, 1),
        "ratio": round(durable / bare, 3) if bare else 0.0,
        "durable_p99_ms": statistics.median(r["p99_ms"] for r in durable_runs),
        "durable_p50_ms": statistics.median(r["p50_ms"] for r in durable_runs),
        "bare_p99_ms": statistics.median(r["p99_ms"] for r in bare_runs),
        **_cpu_figures(runs, "durable"),
        "bare_server_cpu_us": _median_of(bare_runs, "server_cpu_us"),
        "concurrency": args.concurrency,
        "seconds_per_round": seconds,
        "rounds": rounds,
        "durable_rows_stored": stored,
        "durable_rows_expected_at_least": answered_200,
        "round_ratios": [round(d["rps"] / b["rps"], 3)
                         for b, d in zip(bare_runs, durable_runs, strict=True)],
        "load_average_start": round(load_start[0], 2),
        "load_average_end": round(load_end[0], 2),
        "cpus": os.cpu_count(),
        "event_loop": type(asyncio.get_running_loop()).__module__,
        "provisional": True,
    }
    if runs["against"]:
        against = _median(runs["against"], "rps")
        result["against"] = {
            "ref": args.against,
            "durable_rps": round(against, 1),
            "ratio": round(against / bare, 3) if bare else 0.0,
            "durable_p99_ms": _median(runs["against"], "p99_ms"),
            "durable_p50_ms": _median(runs["against"], "p50_ms"),
            **_cpu_figures(runs, "against"),
            "round_speedups": [round(d["rps"] / a["rps"], 3)
                               for a, d in zip(runs["against"], durable_runs, strict=True)],
        }
        result["speedup"] = round(durable / against, 3) if against else 0.0
    print(json.dumps(result))
    return 0 if stored >= answered_200 else 1


def run(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="short rounds, under a minute")
    parser.add_argument("--rounds", type=int, default=None, help="alternating rounds")
    parser.add_argument("--seconds", type=float, default=None, help="measured seconds a round")
    parser.add_argument("--concurrency", type=int, default=64, help="requests in flight")
    parser.add_argument("--loop", choices=("auto", "uvloop", "asyncio"), default="auto")
    parser.add_argument("--against", metavar="GIT_REF", default=None,
                        help="also measure the durable app of this git revision, same rounds")
    parser.add_argument("--serve", choices=("bare", "durable"), help=argparse.SUPPRESS)
    parser.add_argument("--db", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        run_async(_serve(args.serve, args.db), args.loop)
        return 0
    return run_async(main(args), args.loop)


if __name__ == "__main__":
    sys.exit(run())
