"""``syncd serve`` as an operator runs it: listens, answers health and webhooks, stops on
SIGTERM with what it accepted stored."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import httpx
import pytest

from plugins.quickbooks.webhooks import sign
from plugins.square.webhooks import sign as square_sign
from tests.acceptance.conftest import SYNCD, Run

TOKEN = "verifier-token-for-acceptance"
SQUARE_KEY = "square-key-for-acceptance"
VENUE = uuid.UUID("7a1d0c55-0000-4000-8000-0000000000aa")


@pytest.fixture
def served(db_url: str, tmp_path: Path) -> Iterator[tuple[subprocess.Popen[str], str]]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("SYNCD_") and k != "DATABASE_URL"}
    env.update({"SYNCD_DATABASE_URL": db_url, "SYNCD_LOG_FORMAT": "json",
                "SYNCD_WEBHOOK_SECRETS": json.dumps({"quickbooks": TOKEN,
                                                     "square": SQUARE_KEY}),
                "SYNCD_PUBLIC_BASE_URL": "https://syncd.example",
                "SYNCD_CONFIG_DIR": str(tmp_path / "config")})
    proc = subprocess.Popen([SYNCD, "serve", "--host", "127.0.0.1", "--port", "0"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("syncd serve: listening on http://127.0.0.1:"), (
            line, proc.stderr.read() if proc.poll() is not None and proc.stderr else "")
        yield proc, line.rsplit(" ", 1)[1].strip()
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=30)
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()


async def test_serve_answers_health_stores_a_webhook_and_stops_on_sigterm(
    served: tuple[subprocess.Popen[str], str], db_url: str
) -> None:
    proc, url = served
    body = b'{"eventNotifications": []}'
    with httpx.Client(timeout=30) as http:
        health = http.get(url + "/healthz")
        ready = http.get(url + "/readyz")
        stored = http.post(url + "/webhooks/quickbooks", content=body, headers={
            "Content-Type": "application/json", "intuit-signature": sign(body, TOKEN)})
        forged = http.post(url + "/webhooks/quickbooks", content=body, headers={
            "Content-Type": "application/json", "intuit-signature": sign(body, "guess")})
        metrics = http.get(url + "/metrics")
    assert health.status_code == 200
    assert ready.status_code == 503
    assert "config: no config revision has been applied (syncd apply)" in ready.json()["reasons"]
    assert (stored.status_code, forged.status_code) == (200, 401)
    assert 'syncd_webhooks_total{outcome="stored",provider="quickbooks"} 1.0' in metrics.text
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 0
    conn = await asyncpg.connect(db_url)
    try:
        assert await conn.fetchval("SELECT count(*) FROM integration_webhooks") == 1
    finally:
        await conn.close()
    assert proc.stderr is not None
    assert TOKEN not in proc.stderr.read()


def test_serve_refuses_a_bad_port_in_one_line(syncd: Run) -> None:
    result = syncd("serve", "--port", "70000")
    assert result.returncode == 2
    assert "port must be 0 to 65535" in result.stderr
    assert "Traceback" not in result.stderr


async def test_a_served_delivery_is_processed_by_syncd_worker_into_a_targeted_sync(
    served: tuple[subprocess.Popen[str], str], db_url: str, tmp_path: Path
) -> None:
    _proc, url = served
    conn = await asyncpg.connect(db_url)
    try:
        await conn.execute(
            "INSERT INTO integration_configs (venue_id, provider, credentials, schedules) "
            "VALUES ($1, 'square', $2::jsonb, $3::jsonb)", VENUE,
            json.dumps({"token": "oauth", "account": {"merchant_id": "MLACCEPT01"}}),
            json.dumps({"customer": {"cron": "0 * * * *", "lane": "NORMAL"}}))
        body = json.dumps({"merchant_id": "MLACCEPT01", "type": "customer.updated",
                           "event_id": "evt-acceptance-1",
                           "data": {"type": "customer", "id": "CUST-9",
                                    "object": {"customer": {"id": "CUST-9"}}}}).encode()
        signature = square_sign(body, "https://syncd.example/webhooks/square", SQUARE_KEY)
        with httpx.Client(timeout=30) as http:
            stored = http.post(url + "/webhooks/square", content=body, headers={
                "Content-Type": "application/json",
                "x-square-hmacsha256-signature": signature})
        assert stored.json() == {"status": "stored"}
        env = {k: v for k, v in os.environ.items()
               if not k.startswith("SYNCD_") and k != "DATABASE_URL"}
        env.update({"SYNCD_DATABASE_URL": db_url, "SYNCD_LOG_FORMAT": "json",
                    "SYNCD_QUEUE_POLL_SECONDS": "0.2"})
        worker = subprocess.Popen([SYNCD, "worker", "--no-scheduler"], env=env,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                  cwd=tmp_path)
        try:
            deadline = time.monotonic() + 60
            status = None
            while time.monotonic() < deadline:
                status = await conn.fetchval("SELECT status FROM integration_webhooks")
                if status != "pending":
                    break
                await asyncio.sleep(0.2)
        finally:
            worker.send_signal(signal.SIGTERM)
            worker.wait(timeout=60)
        assert status == "processed"
        change = await conn.fetchrow("SELECT venue_id, entity_type, remote_id "
                                     "FROM inbound_changes")
        assert tuple(change) == (VENUE, "customer", "CUST-9")
        syncs = await conn.fetch("SELECT venue_id, provider, entity_type, lane FROM sync_queue "
                                 "WHERE entity_type <> 'webhooks'")
        assert [tuple(s) for s in syncs] == [(VENUE, "square", "customer", "HIGH")]
    finally:
        await conn.close()
