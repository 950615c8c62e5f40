"""OAuth connect against each provider's emulator: the happy path and every refusal."""

from __future__ import annotations

import json
from urllib.parse import parse_qs, urlsplit

import asyncpg
import httpx
import pytest

from daemon.oauth.app import OAuthError
from daemon.provider import ClientContext
from tests.integration.oauth_env import OAUTH_PROVIDERS, OTHER_VENUE, VENUE, oauth_world

FACTS = {
    "square": ("merchant_id", "MLEMULATOR0001"),
    "quickbooks": ("realm_id", "9130350000000001"),
    "mailchimp": ("dc", "us6"),
    "stripe": ("account", "acct_1EmulatorConnected"),
}


@pytest.mark.parametrize("provider", OAUTH_PROVIDERS)
async def test_connect_stores_sealed_tokens_and_queues_the_first_sync(
        pool: asyncpg.Pool, db_url: str, provider: str) -> None:
    async with oauth_world(pool, db_url, provider) as world:
        request = await world.service.start("The Laugh Track", provider, user="ops")
        query = parse_qs(urlsplit(request.url).query)
        assert query["state"] == [request.state]
        assert len(request.state) >= 43  # 256 bits, URL-safe base64
        assert query["redirect_uri"] == [f"http://localhost:8080/oauth/{provider}/callback"]
        assert "code_challenge" not in query  # none of these declares PKCE
        callback = await world.consent(request.url)
        done = await world.service.complete_url(callback, user="ops")

        fact, value = FACTS[provider]
        assert done.venue_id == VENUE
        row = await pool.fetchrow("SELECT * FROM oauth_tokens")
        assert row["account"][fact] == value
        assert row["encryption_key_version"] == 1
        config = await pool.fetchrow("SELECT status, connected_at FROM integration_configs "
                                     "WHERE venue_id = $1 AND provider = $2", VENUE, provider)
        assert config["status"] == "connected"
        assert config["connected_at"] is not None
        log = await pool.fetchrow("SELECT operation, status, details FROM sync_logs")
        assert (log["operation"], log["status"]) == ("oauth_completed", "completed")
        job = await pool.fetchrow("SELECT id, lane, entity_type, payload FROM sync_queue")
        assert (job["id"], job["lane"], job["entity_type"]) == (done.job_id, "HIGH", "all")
        assert await pool.fetchval("SELECT consumed_at FROM oauth_states") is not None

        creds = await world.store().get(VENUE, provider)
        assert creds.account[fact] == value
        assert creds.access_token is not None
        assert creds.access_token.encode() not in row["encrypted_access_token"]
        dump = json.dumps([dict(r) for r in await pool.fetch(
            "SELECT * FROM oauth_tokens")], default=repr)
        assert creds.access_token not in dump
        plugin = world.plugins.provider(provider)
        account = (await world.http.get(world.url + "/_emulator/credentials")).json()["account"]
        options = {k: v for k, v in account.items() if k in plugin.options_model().model_fields}
        client = plugin.client(ClientContext(venue_id=VENUE, credentials=creds, options=options,
                                             http=world.http, base_url=world.url))
        status = await client.test_connection()
        await client.aclose()
        assert status.ok, status.detail


async def test_pkce_sends_an_s256_challenge_and_keeps_the_verifier_sealed(
        pool: asyncpg.Pool, db_url: str) -> None:
    async with oauth_world(pool, db_url, "square", pkce=True) as world:
        request = await world.service.start(VENUE, "square", user="ops")
        query = parse_qs(urlsplit(request.url).query)
        assert query["code_challenge_method"] == ["S256"]
        assert len(query["code_challenge"][0]) == 43
        sealed = await pool.fetchval("SELECT encrypted_code_verifier FROM oauth_states")
        assert sealed is not None
        await world.service.complete_url(await world.consent(request.url), user="ops")
        row = await pool.fetchrow("SELECT refresh_token_expires_at FROM oauth_tokens")
        assert row["refresh_token_expires_at"] is not None  # only PKCE grants carry one
        before = await world.refresher().tokens.load_token(pool, VENUE, "square")
        assert before is not None
        after = await world.refresher().refresh(VENUE, "square", stale=before.access_token)
        assert after is not None
        assert after.refresh_token != before.refresh_token  # PKCE refresh tokens rotate
        assert world.emulator.tokens.lookup(before.refresh_token or "", "refresh") is None
        assert world.emulator.tokens.lookup(after.refresh_token or "", "refresh") is not None


async def _refused(world, callback: str, message: str, **kw: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(OAuthError, match=message) as err:
        await world.service.complete_url(callback, **kw)
    assert str(err.value).endswith("nothing was stored")
    assert "code=" not in str(err.value)
    assert await world.count("oauth_tokens") == 0
    assert await world.pool.fetchval("SELECT count(*) FROM integration_configs "
                                     "WHERE status = 'connected'") == 0


def _with(callback: str, **params: str) -> str:
    parts = urlsplit(callback)
    query = {k: v[0] for k, v in parse_qs(parts.query).items()}
    query.update(params)
    return parts._replace(query=str(httpx.QueryParams(query))).geturl()


async def test_every_bad_callback_is_refused_and_stores_nothing(
        pool: asyncpg.Pool, db_url: str) -> None:
    async with oauth_world(pool, db_url, "quickbooks") as world:
        async def fresh(venue: str = VENUE, user: str = "ops") -> str:
            request = await world.service.start(venue, "quickbooks", user=user)
            return await world.consent(request.url)

        await _refused(world, _with(await fresh(), state="forged-state-value"),
                       "unknown OAuth state")
        await _refused(world, _with(await fresh(), error="access_denied"),
                       "was not completed: consent was denied", user="ops")
        await _refused(world, await fresh(venue=OTHER_VENUE),
                       "this OAuth state is for another venue", venue=VENUE)
        await _refused(world, await fresh(), "this OAuth state is for another venue",
                       venue="Old Town Theatre")
        await _refused(world, await fresh(user="mallory"), "started by another user",
                       user="ops")
        callback = await fresh()
        await pool.execute("UPDATE oauth_states SET created_at = now() - interval '11 minutes',"
                           " expires_at = now() - interval '1 minute'")
        await _refused(world, callback, "this OAuth state expired")
        await _refused(world, _with(await fresh(), code="not-a-code-the-provider-issued"),
                       r"quickbooks code exchange refused: HTTP 400 \(invalid_grant\)")
        other = _with(await fresh()).replace("/oauth/quickbooks/", "/oauth/square/")
        await _refused(world, other, "this OAuth state is for quickbooks, not square")
        no_realm = await fresh()
        parts = urlsplit(no_realm)
        query = {k: v[0] for k, v in parse_qs(parts.query).items() if k != "realmId"}
        await _refused(world, parts._replace(query=str(httpx.QueryParams(query))).geturl(),
                       "did not carry realm_id")

        ok = await fresh()
        await world.service.complete_url(ok, user="ops")
        await pool.execute("DELETE FROM oauth_tokens")
        await pool.execute("UPDATE integration_configs SET status = 'disconnected'")
        await _refused(world, ok, "this OAuth state was already used")


async def test_start_refuses_what_cannot_be_connected(pool: asyncpg.Pool, db_url: str) -> None:
    async with oauth_world(pool, db_url, "quickbooks") as world:
        with pytest.raises(OAuthError, match="no quickbooks integration for venue Nowhere"):
            await world.service.start("Nowhere", "quickbooks", user="ops")
        await pool.execute("INSERT INTO integration_configs (venue_id, provider) "
                           "VALUES ($1, 'acme')", VENUE)
        with pytest.raises(OAuthError, match="unknown provider 'acme'"):
            await world.service.start(VENUE, "acme", user="ops")
        world.service.settings = world.settings.model_copy(update={"oauth_clients": {}})
        with pytest.raises(OAuthError, match="no OAuth app configured for quickbooks: add its "
                                             "client_id and client_secret to "
                                             "SYNCD_OAUTH_CLIENTS"):
            await world.service.start(VENUE, "quickbooks", user="ops")
        assert await world.count("oauth_states") == 0
