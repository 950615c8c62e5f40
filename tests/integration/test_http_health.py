"""``/healthz``, ``/readyz`` and ``/metrics`` against real Postgres."""

from __future__ import annotations

import time
from pathlib import Path

import asyncpg
import httpx
import pytest

from daemon.db import init_connection
from tests.integration import webhook_support as ws


async def test_healthz_reports_a_responsive_loop(pool: asyncpg.Pool, tmp_path: Path) -> None:
    async with ws.running_app(pool, tmp_path) as server, httpx.AsyncClient() as http:
        response = await http.get(server.url + "/healthz")
    assert response.status_code == 200
    assert response.json()["status"] == "ok"
    assert response.json()["loop_lag_seconds"] >= 0


async def test_healthz_fails_while_the_loop_is_blocked(pool: asyncpg.Pool,
                                                       tmp_path: Path) -> None:
    async with ws.running_app(pool, tmp_path, health_max_loop_lag_seconds=0.05) as server, \
            httpx.AsyncClient() as http:
        time.sleep(1.0)  # a runaway callback holding the event loop
        blocked = await http.get(server.url + "/healthz")
    assert blocked.status_code == 503
    assert blocked.json()["status"] == "unhealthy"


async def test_readyz_needs_an_applied_config_revision(pool: asyncpg.Pool,
                                                       tmp_path: Path) -> None:
    async with ws.running_app(pool, tmp_path) as server, httpx.AsyncClient() as http:
        before = await http.get(server.url + "/readyz")
        await pool.execute("INSERT INTO config_revisions (content_hash) VALUES ('abc')")
        after = await http.get(server.url + "/readyz")
    assert before.status_code == 503
    assert before.json()["reasons"] == [
        "config: no config revision has been applied (syncd apply)"]
    assert before.json()["checks"]["database"]["ok"] is True
    assert before.json()["checks"]["migrations"]["ok"] is True
    assert after.status_code == 200
    assert after.json()["status"] == "ready"


async def test_readyz_notices_config_files_not_yet_applied(pool: asyncpg.Pool,
                                                           tmp_path: Path) -> None:
    venues = tmp_path / "config" / "venues"
    venues.mkdir(parents=True)
    (venues / "a.yaml").write_text("venue: {}\n")
    await pool.execute("INSERT INTO config_revisions (content_hash) VALUES ('stale')")
    async with ws.running_app(pool, tmp_path) as server, httpx.AsyncClient() as http:
        response = await http.get(server.url + "/readyz")
    assert response.status_code == 503
    assert response.json()["reasons"] == [
        "config: the config directory differs from applied revision 1"]


async def test_readyz_reports_pending_migrations(empty_db_url: str, tmp_path: Path) -> None:
    pool = await asyncpg.create_pool(empty_db_url, min_size=1, max_size=2,
                                     init=init_connection)
    try:
        async with ws.running_app(pool, tmp_path) as server, httpx.AsyncClient() as http:
            response = await http.get(server.url + "/readyz")
    finally:
        await pool.close()
    assert response.status_code == 503
    reasons = response.json()["reasons"]
    assert reasons[0].startswith("migrations: not current: 0001 pending")


async def test_readyz_reports_an_unreachable_database(db_url: str, tmp_path: Path) -> None:
    pool = await asyncpg.create_pool(db_url, min_size=0, max_size=2, init=init_connection)
    async with ws.running_app(pool, tmp_path) as server, httpx.AsyncClient() as http:
        await pool.close()
        response = await http.get(server.url + "/readyz")
    assert response.status_code == 503
    assert response.json()["checks"]["database"]["ok"] is False
    assert response.json()["reasons"][0].startswith("database: database unreachable")


async def test_metrics_expose_queue_and_webhook_series_without_secrets(
    pool: asyncpg.Pool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in ws.ENV.items():
        monkeypatch.setenv(name, value)
    await ws.connect_venues(pool)
    path, body, headers = ws.signed("stripe", 3)
    async with ws.running_app(pool, tmp_path) as server, httpx.AsyncClient() as http:
        await http.post(server.url + path, content=body, headers=headers)
        await http.post(server.url + path, content=body + b"x", headers=headers)
        await http.post(server.url + "/webhooks/no-such-provider", content=body, headers=headers)
        response = await http.get(server.url + "/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    text = response.text
    assert 'syncd_queue_depth{lane="CRITICAL",status="pending"} 1.0' in text
    assert 'syncd_webhook_events{provider="stripe",status="pending"} 1.0' in text
    assert 'syncd_webhooks_total{outcome="stored",provider="stripe"}' in text
    assert 'syncd_webhooks_total{outcome="unauthorized",provider="stripe"}' in text
    assert 'provider="unknown"' in text
    assert "no-such-provider" not in text
    for secret in (ws.STRIPE_VENUE_SECRET, ws.SQUARE_KEY, str(ws.VENUE_STRIPE)):
        assert secret not in text
