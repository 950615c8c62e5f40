"""Disconnect against each OAuth emulator: revoke where offered, delete, mark."""

from __future__ import annotations

import asyncpg
import pytest

from daemon.credentials import CredentialError
from daemon.oauth.app import OAuthError
from daemon.oauth.disconnect import disconnect
from tests.integration.oauth_env import OAUTH_PROVIDERS, VENUE, oauth_world

REVOCATION = {"square": "revoked", "quickbooks": "revoked", "stripe": "revoked",
              "mailchimp": "no revoke endpoint"}


@pytest.mark.parametrize("provider", OAUTH_PROVIDERS)
async def test_disconnect_revokes_deletes_and_marks(pool: asyncpg.Pool, db_url: str,
                                                    provider: str) -> None:
    async with oauth_world(pool, db_url, provider) as world:
        await world.connect()
        token = await world.refresher().tokens.load_token(pool, VENUE, provider)
        assert token is not None
        assert world.emulator.tokens.lookup(token.access_token) is not None
        done = await disconnect(world.service, "The Laugh Track", provider)
        assert done.revocation == REVOCATION[provider]
        assert (done.tokens_deleted, done.keys_deleted) == (1, 0)
        revoked = world.emulator.tokens.lookup(token.access_token) is None
        assert revoked is (provider != "mailchimp")
        assert await world.count("oauth_tokens") == 0
        row = await pool.fetchrow("SELECT status, disconnected_at FROM integration_configs "
                                  "WHERE venue_id = $1 AND provider = $2", VENUE, provider)
        assert row["status"] == "disconnected"
        assert row["disconnected_at"] is not None
        with pytest.raises(CredentialError, match="connect it with `syncd oauth url"):
            await world.store().get(VENUE, provider)
        again = await disconnect(world.service, VENUE, provider)
        assert again.revocation == "no grant"


async def test_an_unreachable_provider_changes_nothing_unless_told(
        pool: asyncpg.Pool, db_url: str) -> None:
    async with oauth_world(pool, db_url, "quickbooks") as world:
        await world.connect()
        world.service.base_urls = {"quickbooks": "http://127.0.0.1:9"}  # nothing listens
        with pytest.raises(OAuthError, match=r"cannot reach the provider \(ConnectError\); "
                                             "nothing was changed"):
            await disconnect(world.service, VENUE, "quickbooks")
        assert await world.count("oauth_tokens") == 1
        done = await disconnect(world.service, VENUE, "quickbooks", revoke_grant=False)
        assert done.revocation == "skipped"
        assert await world.count("oauth_tokens") == 0


async def test_a_grant_the_provider_forgot_counts_as_revoked(pool: asyncpg.Pool,
                                                            db_url: str) -> None:
    async with oauth_world(pool, db_url, "square") as world:
        await world.connect()
        world.emulator.tokens.revoke_account("MLEMULATOR0001")
        done = await disconnect(world.service, VENUE, "square")
        assert done.revocation == "already revoked"
        assert await world.count("oauth_tokens") == 0
