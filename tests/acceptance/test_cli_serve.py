"""``syncd serve`` as an operator runs it: listens, answers health and webhooks, stops on
SIGTERM with what it accepted stored."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import httpx
import pytest

from plugins.quickbooks.webhooks import sign
from tests.acceptance.conftest import SYNCD, Run

TOKEN = "verifier-token-for-acceptance"


@pytest.fixture
def served(db_url: str, tmp_path: Path) -> Iterator[tuple[subprocess.Popen[str], str]]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("SYNCD_") and k != "DATABASE_URL"}
    env.update({"SYNCD_DATABASE_URL": db_url, "SYNCD_LOG_FORMAT": "json",
                "SYNCD_WEBHOOK_SECRETS": json.dumps({"quickbooks": TOKEN}),
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
