"""Rotation reseals every kind of stored secret: tokens, API keys and PKCE verifiers."""

from __future__ import annotations

import uuid

import asyncpg

from daemon.vault import LocalKeyProvider, Vault
from daemon.vault import rows as bindings
from daemon.vault.keys import generate_key
from daemon.vault.rotate import KeyCount, key_status, rotate
from daemon.vault.tokens import StoredToken, TokenVault

K1, K2 = generate_key(), generate_key()
VENUE = "0d0e1f20-0000-4000-8000-000000000001"


async def test_rotation_covers_tokens_keys_and_states(pool: asyncpg.Pool) -> None:
    old = Vault(LocalKeyProvider({1: K1}))
    await pool.execute("INSERT INTO integration_configs (venue_id, provider) VALUES "
                       "($1, 'quickbooks'), ($1, 'stripe')", uuid.UUID(VENUE))
    tokens = TokenVault(old)
    await tokens.save_token(pool, VENUE, "quickbooks", StoredToken("acc-1", "ref-1"))
    await tokens.save_api_key(pool, VENUE, "stripe", environment="production", value="sk-1")
    verifier = await old.seal("verifier-1", bindings.code_verifier(VENUE, "square", "st-1"))
    await pool.execute(
        "INSERT INTO oauth_states (state, venue_id, provider, redirect_uri, "
        "encrypted_code_verifier, encryption_key_version, expires_at) "
        "VALUES ('st-1', $1, 'square', 'http://x/cb', $2, 1, now() + interval '5 minutes')",
        uuid.UUID(VENUE), verifier.blob)
    assert await key_status(pool) == [KeyCount("oauth_states", 1, 1),
                                      KeyCount("oauth_tokens", 1, 2),
                                      KeyCount("venue_api_keys", 1, 1)]

    new = Vault(LocalKeyProvider({1: K1, 2: K2}))
    report = await rotate(pool, new, batch_size=1)
    assert (report.version, report.rows, report.batches) == (2, 3, 3)
    assert {c.version for c in await key_status(pool)} == {2}
    assert (await rotate(pool, new)).rows == 0

    only_new = TokenVault(Vault(LocalKeyProvider({2: K2})))
    token = await only_new.load_token(pool, VENUE, "quickbooks")
    assert token is not None
    assert (token.access_token, token.refresh_token) == ("acc-1", "ref-1")
    assert await only_new.load_api_key(pool, VENUE, "stripe", "production") == "sk-1"
    row = await pool.fetchrow("SELECT encrypted_code_verifier, encryption_key_version "
                              "FROM oauth_states")
    assert await only_new.vault.open(row["encrypted_code_verifier"], 2,
                                     bindings.code_verifier(VENUE, "square", "st-1")) == \
        "verifier-1"
