"""GET /api/v1/inbound-changes: each change with its outcome, scoped by venue, answering as
the OpenAPI description says."""

from __future__ import annotations

import uuid

import asyncpg
import httpx
import pytest

from tests.integration import webhook_support as ws
from tests.integration.test_http_api import API, STRIPE_ADMIN, bearer, check, token


async def _change(pool: asyncpg.Pool, venue: uuid.UUID, provider: str, status: str) -> int:
    value: int = await pool.fetchval(
        "INSERT INTO inbound_changes (venue_id, provider, entity_type, remote_id, change, "
        "source, dedupe_key, status, reason_code, reason) VALUES ($1, $2, 'customer', 'r1', "
        "'updated', 'webhook', $3, $4, $5, $6) RETURNING id", venue, provider,
        uuid.uuid4().hex, status, "echo" if status == "ignored" else None,
        "the values syncd pushed came back" if status == "ignored" else None)
    return value


async def test_inbound_changes_are_listed_per_venue_with_their_outcome(
        pool: asyncpg.Pool, tmp_path: pytest.TempPathFactory) -> None:
    await ws.connect_venues(pool)
    mine = await _change(pool, ws.VENUE_STRIPE, "stripe", "ignored")
    await _change(pool, ws.VENUE_MAILCHIMP, "mailchimp", "applied")
    async with ws.running_app(pool, tmp_path, **API) as server, \
            httpx.AsyncClient(base_url=server.url + "/api/v1") as http:
        admin = await http.get("/inbound-changes", headers=bearer(token(role="platform_admin")))
        assert admin.status_code == 200
        check(admin.json(), "/inbound-changes", "get", "200")
        assert len(admin.json()["changes"]) == 2
        venue = await http.get("/inbound-changes", headers=bearer(token(STRIPE_ADMIN)))
        [change] = venue.json()["changes"]
        assert (change["id"], change["status"], change["reason_code"]) == (
            mine, "ignored", "echo")
        applied = await http.get("/inbound-changes", params={"status": "applied"},
                                 headers=bearer(token(role="platform_admin")))
        assert [c["provider"] for c in applied.json()["changes"]] == ["mailchimp"]
        bad = await http.get("/inbound-changes", params={"status": "done"},
                             headers=bearer(token(role="platform_admin")))
        assert bad.status_code == 400
        check(bad.json(), "/inbound-changes", "get", "400")
        assert (await http.get("/inbound-changes")).status_code == 401
