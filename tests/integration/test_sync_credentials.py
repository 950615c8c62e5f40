"""Tokens from an emulator's control API, through the credential store."""

from __future__ import annotations

import uuid

import asyncpg
import pytest

from daemon.credentials import CredentialError, EmulatorTokens, ReferenceCredentialStore
from daemon.testing.emulator import EmulatorServer
from tests.integration.test_sync_toy import ToyEmulator


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
