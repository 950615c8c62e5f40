"""Two ``syncd worker`` processes sync venues that share one Mailchimp account, against an
emulator that counts each account's connections in flight across every caller: together
they never hold more than the 10 connections Mailchimp allows a user, and meet no 429."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import asyncpg

from daemon.db import init_connection
from daemon.plugins import load_plugins
from daemon.provider import EmulatorSettings
from daemon.queue import enqueue
from daemon.testing.emulator import EmulatorServer
from daemon.testing.platform import create_platform_schema, seed_venue

ROOT = Path(__file__).resolve().parents[2]
SYNCD = str(Path(sys.executable).parent / "syncd")
VENUES = 8
ALLOWED = 10  # simultaneous connections per Mailchimp user
NAMES = ("replica-a", "replica-b")


def _log(tmp_path: Path, name: str) -> str:
    return (tmp_path / f"{name}.log").read_text()


async def test_two_workers_sharing_an_account_stay_within_its_connections(
        db_url: str, tmp_path: Path) -> None:
    provider = load_plugins().provider("mailchimp")
    # Half a second per call: at 25 calls a second the account would need 12 connections,
    # and two workers each allowed 10 would open up to 20 without the shared limiter.
    settings = EmulatorSettings(latency=0.5, enforce_rate_limits=True, seed=3)
    async with EmulatorServer(provider.emulator(settings)) as server:
        emulator = server.emulator
        assert emulator is not None
        creds = emulator.default_credentials()
        facts = creds["account"]
        venues = []
        conn = await asyncpg.connect(db_url)
        try:
            await init_connection(conn)
            await create_platform_schema(conn)
            for i in range(VENUES):
                sample = await seed_venue(conn, name=f"Shared Account Venue {i}",
                                          events=20, customers=5, orders=20)
                await conn.execute(
                    "INSERT INTO integration_configs (venue_id, provider, venue_name, status, "
                    "credentials, options) VALUES ($1, 'mailchimp', $2, 'connected', $3, $4)",
                    sample.venue_id, f"Shared Account Venue {i}", {"access_token": "oauth"},
                    {"list_id": facts["list_id"], "store_id": facts["store_id"]})
                venues.append(sample.venue_id)
        finally:
            await conn.close()

        env = {k: v for k, v in os.environ.items()
               if not k.startswith("SYNCD_") and k != "DATABASE_URL"}
        env.update({"PYTHONPATH": str(ROOT), "SYNCD_DATABASE_URL": db_url,
                    "SYNCD_LOG_FORMAT": "json", "SYNCD_WORKER_CONCURRENCY": "4",
                    "SYNCD_QUEUE_BATCH_SIZE": "2",
                    "SYNCD_QUEUE_POLL_SECONDS": "0.5", "SYNCD_WORKER_GRACE_SECONDS": "2",
                    "SYNCD_SYNC_BASE_URLS": json.dumps({"mailchimp": server.url})})
        procs = []
        for name in NAMES:
            with (tmp_path / f"{name}.log").open("wb") as out:
                procs.append(subprocess.Popen(
                    [SYNCD, "worker", "--no-scheduler", "--owner", name], env=env, cwd=ROOT,
                    stdout=out, stderr=subprocess.STDOUT))
        try:
            # Both workers listen before the jobs arrive, so that both take some of them.
            deadline = time.monotonic() + 60
            while not all('"worker.started"' in _log(tmp_path, n) for n in NAMES):
                assert time.monotonic() < deadline, "the workers did not start"
                await asyncio.sleep(0.2)
            conn = await asyncpg.connect(db_url)
            try:
                await init_connection(conn)
                for venue in venues:
                    await enqueue(conn, venue_id=venue, provider="mailchimp",
                                  entity_type="all")
            finally:
                await conn.close()
            deadline = time.monotonic() + 180
            while time.monotonic() < deadline:
                await asyncio.sleep(0.5)
                pool_conn = await asyncpg.connect(db_url)
                try:
                    left = await pool_conn.fetchval(
                        "SELECT count(*) FROM sync_queue WHERE status <> 'completed'")
                finally:
                    await pool_conn.close()
                if left == 0:
                    break
                for proc in procs:
                    assert proc.poll() is None, (tmp_path / "replica-a.log").read_text()[-3000:]
            assert left == 0, "the jobs did not finish"
        finally:
            for proc in procs:
                if proc.poll() is None:
                    proc.send_signal(signal.SIGTERM)
            for proc in procs:
                await asyncio.get_running_loop().run_in_executor(None, proc.wait, 30)
        usage = emulator.usage[str(emulator.default_account)]
        # Both workers ran some of the syncs, at the same time.
        assert all('"sync.run_finished"' in _log(tmp_path, n) for n in NAMES)
        assert usage.requests >= VENUES * 40
        assert usage.peak_in_flight <= ALLOWED, usage
        assert usage.rate_limited == 0, usage
        assert usage.peak_in_flight >= ALLOWED // 2  # the account was busy
