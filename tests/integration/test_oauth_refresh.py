"""Refreshing stored tokens: before expiry, after a 401, for good failures, and races."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
from structlog.testing import capture_logs

from tests.integration.oauth_env import KEYS, VENUE, OAuthWorld, oauth_world
from tests.integration.refresh_race import BARRIER

ROOT = Path(__file__).resolve().parents[2]
TOKEN_PATH = "/oauth2/v1/tokens/bearer"


def token_calls(world: OAuthWorld) -> int:
    return sum(1 for r in world.emulator.requests if r.path == TOKEN_PATH)


async def test_a_token_expiring_within_the_margin_is_refreshed_before_use(
        pool: asyncpg.Pool, db_url: str) -> None:
    async with oauth_world(pool, db_url, "quickbooks") as world:
        await world.connect()
        store = world.store()
        first = await store.get(VENUE, "quickbooks")
        assert token_calls(world) == 1  # the code exchange only: an hour is outside the margin
        await pool.execute("UPDATE oauth_tokens SET expires_at = now() + interval '2 minutes'")
        fresh = await store.get(VENUE, "quickbooks")
        assert fresh.access_token != first.access_token
        assert token_calls(world) == 2
        assert fresh.expires_at is not None
        assert fresh.expires_at > datetime.now(UTC) + timedelta(minutes=50)
        row = await pool.fetchrow("SELECT refresh_count, last_refreshed_at FROM oauth_tokens")
        assert row["refresh_count"] == 1
        assert fresh.account["realm_id"] == "9130350000000001"


async def test_a_refused_token_is_refreshed_once_and_the_rotated_one_kept(
        pool: asyncpg.Pool, db_url: str) -> None:
    async with oauth_world(pool, db_url, "quickbooks") as world:
        await world.connect()
        store = world.store()
        before = await world.refresher().tokens.load_token(pool, VENUE, "quickbooks")
        assert before is not None
        fresh = await store.refresh(VENUE, "quickbooks")
        assert fresh is not None
        after = await world.refresher().tokens.load_token(pool, VENUE, "quickbooks")
        assert after is not None
        assert after.access_token == fresh.access_token != before.access_token
        assert after.refresh_token != before.refresh_token  # QuickBooks rotated it
        # The stored one is the provider's current refresh token: it refreshes again.
        assert await store.refresh(VENUE, "quickbooks") is not None
        assert token_calls(world) == 3


async def test_a_refresh_refused_for_good_puts_the_integration_in_error(
        pool: asyncpg.Pool, db_url: str) -> None:
    async with oauth_world(pool, db_url, "quickbooks") as world:
        await world.connect()
        world.emulator.tokens.revoke_account("9130350000000001")  # the company disconnected
        with capture_logs() as logs:
            assert await world.store().refresh(VENUE, "quickbooks") is None
        row = await pool.fetchrow(
            "SELECT status, health_status, last_error FROM integration_configs "
            "WHERE venue_id = $1 AND provider = 'quickbooks'", VENUE)
        assert row["status"] == "error"
        assert row["health_status"] == "unhealthy"
        assert row["last_error"] == (
            "OAuth token refresh failed for good: quickbooks token refresh refused: HTTP 400 "
            "(invalid_grant); connect it again")
        failed = [e for e in logs if e["event"] == "integration.failed"]
        assert [(e["venue_id"], e["provider"]) for e in failed] == [(VENUE, "quickbooks")]
        assert await pool.fetchval("SELECT refresh_failed_count FROM oauth_tokens") == 1
        # Connecting again clears the error.
        await world.connect()
        assert await pool.fetchval(
            "SELECT status FROM integration_configs WHERE venue_id = $1 "
            "AND provider = 'quickbooks'", VENUE) == "connected"


async def test_ten_refreshers_on_two_processes_refresh_once_and_keep_the_newest_token(
        pool: asyncpg.Pool, db_url: str) -> None:
    async with oauth_world(pool, db_url, "quickbooks") as world:
        await world.connect()
        stale = await world.refresher().tokens.load_token(pool, VENUE, "quickbooks")
        assert stale is not None
        env = {**{k: v for k, v in os.environ.items() if not k.startswith("SYNCD_")},
               "SYNCD_ENCRYPTION_KEYS": KEYS, "SYNCD_LOG_LEVEL": "warning",
               "SYNCD_OAUTH_CLIENTS": json.dumps({"quickbooks": {
                   "client_id": "emulated-client-id",
                   "client_secret": "emulated-client-secret"}})}
        async with pool.acquire() as gate:
            await gate.execute("SELECT pg_advisory_lock($1)", BARRIER)
            procs = [await asyncio.create_subprocess_exec(
                sys.executable, "-m", "tests.integration.refresh_race", db_url, VENUE,
                "quickbooks", world.url, stale.access_token, "5", cwd=ROOT, env=env,
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
                for _ in range(2)]
            while await pool.fetchval(
                    "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' "
                    "AND objid = $1 AND NOT granted", BARRIER) < 10:
                await asyncio.sleep(0.05)
            await gate.execute("SELECT pg_advisory_unlock($1)", BARRIER)
        results = []
        for proc in procs:
            out, err = await proc.communicate()
            assert proc.returncode == 0, err.decode()
            line = next(x for x in out.decode().splitlines() if x.startswith("RESULT "))
            results += json.loads(line.removeprefix("RESULT "))
        stored = await world.refresher().tokens.load_token(pool, VENUE, "quickbooks")
        assert stored is not None
        assert stored.access_token != stale.access_token
        assert results == [hashlib.sha256(stored.access_token.encode()).hexdigest()] * 10
        assert token_calls(world) == 2  # the exchange, then one refresh for all ten
        assert await pool.fetchval("SELECT status FROM integration_configs "
                                   "WHERE venue_id = $1 AND provider = 'quickbooks'",
                                   VENUE) == "connected"
        # The stored refresh token is the newest one: the provider accepts it.
        assert world.emulator.tokens.lookup(stored.refresh_token or "", "refresh") is not None
        assert world.emulator.tokens.lookup(stale.refresh_token or "", "refresh") is None
