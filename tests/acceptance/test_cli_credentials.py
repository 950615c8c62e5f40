"""``syncd credentials set VENUE PROVIDER`` against the Stripe emulator."""

from __future__ import annotations

import asyncio
import json
import os
import uuid
from collections.abc import AsyncIterator

import asyncpg
import httpx
import pytest

from daemon.plugins import load_plugins
from daemon.provider import EmulatorSettings
from daemon.settings import Settings
from daemon.testing.emulator import EmulatorServer
from daemon.vault.keys import format_key, generate_key
from daemon.vault.store import build_credential_store
from tests.acceptance.conftest import SYNCD

VENUE = uuid.UUID("7e57c0de-0000-4000-8000-00000000c0de")
KEYS = format_key(1, generate_key())


@pytest.fixture
async def stripe() -> AsyncIterator[tuple[str, str]]:
    """The Stripe emulator's URL and its valid platform key."""
    app = load_plugins(["stripe"]).provider("stripe").emulator(EmulatorSettings(seed=3))
    async with EmulatorServer(app) as server, httpx.AsyncClient() as http:
        key = (await http.get(server.url + "/_emulator/credentials")).json()["api_key"]
        yield server.url, key


async def _set(db_url: str, url: str, stdin: str, *args: str,
               keys: str | None = KEYS) -> tuple[int, str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SYNCD_")}
    env.update(SYNCD_DATABASE_URL=db_url, SYNCD_LOG_FORMAT="json",
               SYNCD_SYNC_BASE_URLS=json.dumps({"stripe": url}))
    if keys:
        env["SYNCD_ENCRYPTION_KEYS"] = keys
    proc = await asyncio.create_subprocess_exec(
        SYNCD, "credentials", "set", *(args or (str(VENUE), "stripe")), env=env,
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE)
    out, err = await proc.communicate(stdin.encode())
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def _integration(pool: asyncpg.Pool) -> None:
    await pool.execute(
        "INSERT INTO integration_configs (venue_id, provider, venue_name, credentials) "
        "VALUES ($1, 'stripe', 'Blue Door', $2)", VENUE, {"api_key": "env:BLUE_DOOR_STRIPE"})


async def test_a_key_is_tested_then_stored_sealed_and_used(
        db_url: str, pool: asyncpg.Pool, stripe: tuple[str, str]) -> None:
    url, key = stripe
    await _integration(pool)
    code, out, err = await _set(db_url, url, key + "\n", "Blue Door", "stripe")
    assert code == 0, err
    assert out.startswith("stored the stripe API key of venue Blue Door (production), sealed "
                          "with key version 1; connection test passed")
    assert key not in out + err
    row = await pool.fetchrow("SELECT * FROM venue_api_keys")
    assert row["is_valid"] is True
    assert row["validation_error"] is None
    assert key.encode() not in row["encrypted_api_key"]
    assert await pool.fetchval("SELECT status FROM integration_configs") == "connected"

    settings = Settings(_env_file=None, database_url=db_url, encryption_keys=KEYS)
    store = build_credential_store(pool, settings=settings)
    creds = await store.get(str(VENUE), "stripe")  # BLUE_DOOR_STRIPE is unset: the vault answers
    assert creds.api_key == key
    assert await store.refresh(str(VENUE), "stripe") is None  # the provider refused it: a 401
    row = await pool.fetchrow("SELECT is_valid, validation_error FROM venue_api_keys")
    assert row["is_valid"] is False
    assert row["validation_error"].startswith("refused by stripe at ")


async def test_a_refused_key_stores_nothing(db_url: str, pool: asyncpg.Pool,
                                            stripe: tuple[str, str]) -> None:
    url, _ = stripe
    await _integration(pool)
    code, out, err = await _set(db_url, url, "sk_test_not_a_real_key_4242")
    assert code == 1
    lines = err.strip().splitlines()
    assert lines[-1].startswith("syncd: error: stripe refused the key: ")
    assert lines[-1].endswith("; nothing was stored")
    assert "sk_test_not_a_real_key_4242" not in out + err
    assert await pool.fetchval("SELECT count(*) FROM venue_api_keys") == 0
    assert await pool.fetchval("SELECT status FROM integration_configs") == "disconnected"


async def test_bad_input_is_one_line(db_url: str, pool: asyncpg.Pool,
                                     stripe: tuple[str, str]) -> None:
    url, key = stripe
    await _integration(pool)
    cases = [
        (("",), "no API key on standard input"),
        ((key, str(VENUE), "square"), "square does not take an API key; connect it with "
                                      "`syncd oauth url"),
        ((key, "Nowhere", "stripe"), "no stripe integration for venue Nowhere"),
    ]
    for (stdin, *args), message in cases:
        code, _, err = await _set(db_url, url, stdin, *args)
        assert code == 1, err
        assert err.strip().splitlines()[-1].startswith(f"syncd: error: {message}"), err
        assert "Traceback" not in err
    code, _, err = await _set(db_url, url, key, keys=None)
    assert code == 1
    assert err.strip().endswith("no encryption key configured: set SYNCD_ENCRYPTION_KEYS "
                                "(make one with `syncd keys generate`) or "
                                "SYNCD_ENCRYPTION_KEY_FILES")
    assert await pool.fetchval("SELECT count(*) FROM venue_api_keys") == 0
