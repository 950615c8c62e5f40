"""The credential store: tokens from an emulator's control API, references within their
scope, and secrets kept apart from account facts."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from daemon.credentials import (
    CredentialError,
    CredentialScope,
    EmulatorTokens,
    ReferenceCredentialStore,
    WebhookSecrets,
)
from daemon.sync import SyncEngine, SyncSettings
from daemon.testing.emulator import EmulatorServer
from daemon.testing.platform import create_platform_schema, seed_venue
from tests.integration.test_sync_toy import ToyEmulator, ToyProvider


async def test_oauth_references_are_answered_by_the_emulator(pool: asyncpg.Pool) -> None:
    venue = uuid.uuid4()
    await pool.execute(
        "INSERT INTO integration_configs (venue_id, provider, credentials) "
        "VALUES ($1, 'toy', $2)",
        venue, {"api_key": "oauth", "account": {"region": "eu"}})
    emulator = ToyEmulator()
    async with EmulatorServer(emulator) as server:
        store = ReferenceCredentialStore(pool, EmulatorTokens({"toy": server.url}))
        creds = await store.get(str(venue), "toy")
        assert creds.api_key == emulator.api_key
        assert creds.account == {"account": "acct", "region": "eu"}
        emulator.api_key = "rotated"
        assert (await store.get(str(venue), "toy")).api_key != "rotated"  # cached
        fresh = await store.refresh(str(venue), "toy")
        assert fresh is not None
        assert fresh.api_key == "rotated"
    with pytest.raises(CredentialError, match="no OAuth token"):
        await ReferenceCredentialStore(pool, EmulatorTokens({})).get(str(venue), "toy")


async def _toy(pool: asyncpg.Pool, venue: uuid.UUID, credentials: dict[str, Any]) -> None:
    await pool.execute(
        "INSERT INTO integration_configs (venue_id, provider, venue_name, status, credentials,"
        " field_mappings, options, schedules) VALUES ($1, 'toy', 'The Laugh Factory', "
        "'connected', $2, '{}', '{}', '{}')", venue, credentials)


async def test_a_missing_webhook_secret_does_not_stop_pushes(
        pool: asyncpg.Pool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    async with pool.acquire() as conn:
        await create_platform_schema(conn)
        sample = await seed_venue(conn, customers=3, events=2, orders=2)
    emulator = ToyEmulator()
    monkeypatch.setenv("VENUE_TOY_KEY", emulator.api_key)
    await _toy(pool, sample.venue_id, {"api_key": "env:VENUE_TOY_KEY",
                                       "webhook_secret": "file:toy-webhook-secret"})
    scope = CredentialScope(secrets_dir=tmp_path)
    async with EmulatorServer(emulator) as server:
        engine = SyncEngine(pool, {"toy": ToyProvider()},
                            ReferenceCredentialStore(pool, scope=scope),
                            settings=SyncSettings(base_urls={"toy": server.url}))
        report = await engine.run(str(sample.venue_id), "toy")
    assert report.status == "completed", report.error
    assert sum(e.created for e in report.entities) == 3 + 2 + 2


async def test_secrets_stay_out_of_account_and_webhook_secrets_have_their_own_call(
        pool: asyncpg.Pool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    venue = uuid.uuid4()
    monkeypatch.setenv("VENUE_TOKEN", "tok-very-secret")
    (tmp_path / "hook").write_text("whsec-very-secret\n")
    await _toy(pool, venue, {"token": "env:VENUE_TOKEN", "webhook_secret": "file:hook",
                             "client_secret": "env:VENUE_TOKEN",
                             "account": {"realm_id": "123"}})
    store = ReferenceCredentialStore(pool, scope=CredentialScope(secrets_dir=tmp_path))
    creds = await store.get(str(venue), "toy")
    assert creds.access_token == "tok-very-secret"
    assert creds.secrets == {"client_secret": "tok-very-secret"}
    assert creds.account == {"realm_id": "123"}
    assert "very-secret" not in repr(creds)
    assert await store.webhook_secret(str(venue), "toy") == "whsec-very-secret"
    assert isinstance(store, WebhookSecrets)

    await pool.execute("UPDATE integration_configs SET credentials = $1 WHERE venue_id = $2",
                       {"api_key": "file:hook"}, venue)
    assert await store.webhook_secret(str(venue), "toy") is None
    await pool.execute("UPDATE integration_configs SET credentials = $1 WHERE venue_id = $2",
                       {"api_key": "file:/proc/self/environ"}, venue)
    with pytest.raises(CredentialError, match="outside the secrets directory"):
        await store.get(str(venue), "toy")
