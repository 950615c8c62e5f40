"""``syncd sync`` and ``syncd status`` driven as an operator would, against bundled emulators.

The emulators run in a thread of the test process; ``syncd`` runs in subprocesses with
``SYNCD_SYNC_BASE_URLS`` pointing the provider at the emulator, whose OAuth token the
credential store fetches through the emulator's control API.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from daemon.db import init_connection
from daemon.plugins import load_plugins
from daemon.provider import EmulatorSettings
from daemon.testing.emulator import EmulatorServer
from daemon.testing.platform import create_platform_schema, seed_venue
from tests.acceptance.conftest import SYNCD, Run

WRITES = ("POST", "PUT", "PATCH", "DELETE")
READS = ("/search", "/query", "/bulk-retrieve")


class ThreadedEmulator:
    """A bundled provider's emulator served from a background thread's event loop."""

    def __init__(self, provider: str, settings: EmulatorSettings) -> None:
        self.provider = load_plugins().provider(provider)
        self.settings = settings
        self.url = ""
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread = threading.Thread(target=lambda: asyncio.run(self._serve()), daemon=True)

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        async with EmulatorServer(self.provider.emulator(self.settings)) as server:
            self.url = server.url
            self._ready.set()
            await self._stop.wait()

    def __enter__(self) -> ThreadedEmulator:
        self._thread.start()
        assert self._ready.wait(10), "emulator did not start"
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._loop is not None
        assert self._stop is not None
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)

    def get(self, path: str) -> Any:
        return httpx.get(self.url + path, timeout=10).json()

    def patch_settings(self, **changes: Any) -> None:
        httpx.patch(self.url + "/_emulator/settings", json=changes, timeout=10)

    def requests(self) -> list[dict[str, Any]]:
        data = self.get("/_emulator/requests")
        return data if isinstance(data, list) else data["requests"]

    def writes(self) -> list[dict[str, Any]]:
        return [r for r in self.requests() if r["method"] in WRITES
                and not any(p in r["path"] for p in READS)]

    def store(self, collection: str) -> list[dict[str, Any]]:
        data = self.get("/_emulator/store")
        return list(data.get(collection, []))


def _setup(db_url: str, provider: str, options: dict[str, Any], *, customers: int = 30,
           events: int = 6, orders: int = 12) -> uuid.UUID:
    async def go() -> uuid.UUID:
        conn = await asyncpg.connect(db_url)
        await init_connection(conn)
        try:
            await create_platform_schema(conn)
            sample = await seed_venue(conn, customers=customers, events=events, orders=orders)
            await conn.execute(
                "INSERT INTO integration_configs (venue_id, provider, venue_name, status, "
                "credentials, options) VALUES ($1, $2, $3, 'connected', $4, $5)",
                sample.venue_id, provider, sample.name, {"access_token": "oauth"}, options)
            return sample.venue_id
        finally:
            await conn.close()

    return asyncio.run(go())


@pytest.fixture
def stripe() -> Iterator[ThreadedEmulator]:
    with ThreadedEmulator("stripe", EmulatorSettings(seed=1)) as emulator:
        yield emulator


def _env(db_url: str, emulator: ThreadedEmulator) -> dict[str, str]:
    return {"SYNCD_DATABASE_URL": db_url,
            "SYNCD_SYNC_BASE_URLS": json.dumps({emulator.provider.name: emulator.url})}


def test_dry_run_shows_what_would_be_sent_and_sends_nothing(
        syncd: Run, db_url: str, stripe: ThreadedEmulator) -> None:
    venue = _setup(db_url, "stripe", {})
    result = syncd("sync", str(venue), "stripe", "--entity", "product", "--dry-run",
                   env=_env(db_url, stripe))
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("would upsert product") == 6
    assert "dry run" in result.stdout
    assert stripe.writes() == []


def test_sync_then_resync_with_no_change_makes_zero_write_calls(
        syncd: Run, db_url: str, stripe: ThreadedEmulator) -> None:
    venue = _setup(db_url, "stripe", {})
    env = _env(db_url, stripe)
    first = syncd("sync", str(venue), "stripe", env=env)
    assert first.returncode == 0, first.stdout + first.stderr
    table = first.stdout
    assert "completed" in table
    assert any(line.startswith("customer") and " 30 " in f" {line} "
               for line in table.splitlines())
    writes = len(stripe.writes())
    assert writes > 0
    again = syncd("sync", "The Laugh Factory", "stripe", "--json", env=env)
    assert again.returncode == 0, again.stderr
    summary = json.loads(again.stdout)
    assert summary["status"] == "completed"
    assert all(e["sent"] == 0 for e in summary["entities"].values())
    assert len(stripe.writes()) == writes
    status = syncd("status", str(venue), env=env)
    assert status.returncode == 0, status.stderr
    line = next(x for x in status.stdout.splitlines() if "stripe" in x)
    assert "completed" in line
    assert "never" not in line


def test_sync_of_an_unknown_venue_is_one_clear_line(syncd: Run, db_url: str,
                                                    stripe: ThreadedEmulator) -> None:
    _setup(db_url, "stripe", {})
    result = syncd("sync", str(uuid.uuid4()), "stripe", env=_env(db_url, stripe))
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1].startswith(
        "syncd: error: no stripe integration")
    assert "Traceback" not in result.stderr


def test_killed_mid_batch_then_retried_leaves_no_duplicate(syncd: Run, db_url: str,
                                                           tmp_path: Path) -> None:
    # Square customers go 100 to a bulk-create call; a slow emulator keeps a batch in
    # flight when the process is killed with SIGKILL after the first batch committed.
    customers = 450
    with ThreadedEmulator("square", EmulatorSettings(latency=0.4, seed=3)) as square:
        options = {"location_id": square.get("/_emulator/credentials")["account"]
                   ["location_id"]}
        venue = _setup(db_url, "square", options, customers=customers, events=2, orders=2)
        env = {k: v for k, v in os.environ.items()
               if not k.startswith("SYNCD_") and k != "DATABASE_URL"}
        # The killed run holds the integration until its lease runs out: a short lease.
        env.update(_env(db_url, square), SYNCD_LOG_FORMAT="json",
                   SYNCD_DATA_DIR=str(tmp_path / "pgdata"), SYNCD_QUEUE_LEASE_SECONDS="2",
                   SYNCD_QUEUE_HEARTBEAT_SECONDS="0.5", SYNCD_QUEUE_POLL_SECONDS="0.2")
        proc = subprocess.Popen([SYNCD, "sync", str(venue), "square", "--entity", "customer"],
                                env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 60
            while not square.store("customer") and time.monotonic() < deadline:
                time.sleep(0.05)
            assert square.store("customer"), "no batch committed"
            time.sleep(0.1)  # another batch is on the wire now
            proc.send_signal(signal.SIGKILL)
        finally:
            proc.wait(10)
        assert proc.returncode == -signal.SIGKILL
        committed = len(square.store("customer"))
        assert 0 < committed < customers
        result = syncd("sync", str(venue), "square", "--entity", "customer", "--wait",
                       env=env)
        assert result.returncode == 0, result.stdout + result.stderr
        stored = square.store("customer")
        references = [c.get("reference_id") for c in stored]
        assert len(stored) == customers
        assert len(set(references)) == customers
