"""OAuth connect from a browser: sign in, ``/oauth/{provider}/start``, consent at the
provider's emulator, ``/oauth/{provider}/callback``; and every callback that must be refused
(forged, replayed, expired, not started in this browser) stores nothing."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import asyncpg
import httpx
import jwt
import pytest

from daemon.http import create_app
from daemon.http.connect import STATE_COOKIE
from daemon.http.secrets import ReferenceWebhookSecrets
from daemon.http.server import listening
from daemon.http.session import SESSION_COOKIE
from tests.integration import webhook_support as ws
from tests.integration.oauth_env import OAUTH_PROVIDERS, OTHER_VENUE, VENUE, OAuthWorld, oauth_world

SECRET = "oauth-route-secret-0123456789abcdef0123"
ISSUER = "https://platform.example"
AUDIENCE = "syncd"


def token(**claims: Any) -> str:
    now = int(time.time())
    body = {"iss": ISSUER, "aud": AUDIENCE, "sub": "ops@laughtrack", "exp": now + 600,
            **claims}
    return jwt.encode(body, SECRET, algorithm="HS256")


VENUE_ADMIN = {"role": "venue_admin", "venues": [VENUE]}


@dataclass
class Browser:
    world: OAuthWorld
    http: httpx.AsyncClient
    url: str

    async def sign_in(self, claims: dict[str, Any]) -> None:
        response = await self.http.post("/login", data={"token": token(**claims),
                                                         "next": "/"})
        assert response.status_code == 303, response.text
        assert SESSION_COOKIE in response.cookies

    async def start(self, venue: str = VENUE) -> httpx.Response:
        return await self.http.get(f"/oauth/{self.world.provider}/start",
                                   params={"venue": venue})

    async def consent(self, start: httpx.Response) -> str:
        """The provider's consent, and the callback's path and query on this server."""
        assert start.status_code == 303, start.text
        callback = urlsplit(await self.world.consent(start.headers["Location"]))
        assert callback.path == f"/oauth/{self.world.provider}/callback"
        return f"{callback.path}?{callback.query}"

    async def with_cookie(self, path: str, state: str) -> httpx.Response:
        """``path`` fetched by a browser whose only cookie is a state cookie of ``state``."""
        async with httpx.AsyncClient(base_url=self.url) as other:
            return await other.get(path, headers={"Cookie": f"{STATE_COOKIE}={state}"})

    async def tokens(self) -> int:
        return await self.world.count("oauth_tokens")


@asynccontextmanager
async def browser(pool: asyncpg.Pool, db_url: str, tmp_path: Path,
                  provider: str) -> AsyncIterator[Browser]:
    async with oauth_world(pool, db_url, provider) as world:
        settings = ws.settings(tmp_path, api_jwt_secret=SECRET, api_jwt_issuer=ISSUER,
                               api_jwt_audience=AUDIENCE)
        app = create_app(pool=pool, providers=world.plugins.providers, settings=settings,
                         secrets=ReferenceWebhookSecrets(pool), oauth=world.service)
        async with listening(app, settings, host="127.0.0.1", port=0) as url, \
                httpx.AsyncClient(base_url=url, follow_redirects=False) as http:
            yield Browser(world, http, url)


@pytest.mark.parametrize("provider", OAUTH_PROVIDERS)
async def test_a_venue_admin_connects_from_the_browser(
        pool: asyncpg.Pool, db_url: str, tmp_path: Path, provider: str) -> None:
    async with browser(pool, db_url, tmp_path, provider) as b:
        first = await b.start()
        assert first.status_code == 303
        assert first.headers["Location"].startswith("/login?next=")

        await b.sign_in(VENUE_ADMIN)
        started = await b.start()
        location = started.headers["Location"]
        assert location.startswith(b.world.url)
        state = parse_qs(urlsplit(location).query)["state"][0]
        cookie = started.headers["Set-Cookie"]
        assert f"{STATE_COOKIE}={state}" in cookie
        assert "HttpOnly" in cookie
        assert "SameSite=Lax" in cookie
        assert f"Path=/oauth/{provider}/" in cookie

        done = await b.http.get(await b.consent(started))
        assert done.status_code == 200, done.text
        assert "Connected" in done.text
        assert f"{provider} is connected for venue {VENUE}" in done.text
        assert done.headers["Referrer-Policy"] == "same-origin"
        row = await pool.fetchrow("SELECT encrypted_access_token, created_by FROM oauth_tokens")
        assert row["created_by"] == "web:ops@laughtrack"
        creds = await b.world.store().get(VENUE, provider)
        assert creds.access_token is not None
        assert creds.access_token.encode() not in row["encrypted_access_token"]
        status = await pool.fetchval("SELECT status FROM integration_configs "
                                     "WHERE venue_id = $1 AND provider = $2",
                                     uuid.UUID(VENUE), provider)
        assert status == "connected"
        assert await pool.fetchval("SELECT count(*) FROM sync_queue WHERE lane = 'HIGH'") == 1


async def _refused(b: Browser, response: httpx.Response, says: str) -> None:
    assert response.status_code == 400, response.text
    assert says in response.text
    assert "code=" not in response.text
    assert await b.tokens() == 0
    assert await b.world.pool.fetchval(
        "SELECT count(*) FROM integration_configs WHERE status = 'connected'") == 0


async def test_forged_replayed_expired_and_unbound_callbacks_store_nothing(
        pool: asyncpg.Pool, db_url: str, tmp_path: Path) -> None:
    async with browser(pool, db_url, tmp_path, "quickbooks") as b:
        await b.sign_in(VENUE_ADMIN)

        # A forged state: not the one this browser's flow holds.
        callback = await b.consent(await b.start())
        forged = callback.replace("state=", "state=forged", 1)
        await _refused(b, await b.http.get(forged), "not started in this browser")
        # A forged state with a cookie to match it: unknown to syncd.
        await _refused(b, await b.with_cookie(
            "/oauth/quickbooks/callback?code=abc&state=forged-state&realmId=1",
            "forged-state"), "unknown OAuth state")

        # Someone else's callback (a flow started in another browser), then this browser's.
        theirs = await b.consent(await b.start())
        mine = await b.consent(await b.start())
        await _refused(b, await b.http.get(theirs), "not started in this browser")

        # Expired.
        await pool.execute("UPDATE oauth_states SET created_at = created_at - interval '11 min', "
                           "expires_at = expires_at - interval '11 min'")
        await _refused(b, await b.http.get(mine), "expired")

        # Replayed: a state already taken, even with its cookie sent again.
        again = await b.consent(await b.start())
        state = parse_qs(urlsplit(again).query)["state"][0]
        await pool.execute("UPDATE oauth_states SET consumed_at = now() WHERE state = $1",
                           state)
        await _refused(b, await b.http.get(again), "already used")

        # Denied consent.
        denied = await b.consent(await b.start())
        await _refused(b, await b.http.get(denied + "&error=access_denied"),
                       "consent was denied")


async def test_a_completed_callback_cannot_be_used_twice(
        pool: asyncpg.Pool, db_url: str, tmp_path: Path) -> None:
    async with browser(pool, db_url, tmp_path, "stripe") as b:
        await b.sign_in(VENUE_ADMIN)
        started = await b.start()
        state = parse_qs(urlsplit(started.headers["Location"]).query)["state"][0]
        callback = await b.consent(started)
        assert (await b.http.get(callback)).status_code == 200
        before = await pool.fetchval("SELECT updated_at FROM oauth_tokens")
        replay = await b.with_cookie(callback, state)
        assert replay.status_code == 400
        assert "already used" in replay.text
        assert await pool.fetchval("SELECT updated_at FROM oauth_tokens") == before


async def test_another_venues_admin_cannot_start_its_connection(
        pool: asyncpg.Pool, db_url: str, tmp_path: Path) -> None:
    async with browser(pool, db_url, tmp_path, "square") as b:
        await b.sign_in({"role": "venue_admin", "venues": [OTHER_VENUE]})
        theirs = await b.start(VENUE)
        missing = await b.start(str(uuid.uuid4()))
        not_a_venue = await b.start("the-laugh-track")
        assert theirs.status_code == 404
        assert (theirs.status_code, theirs.text) == (missing.status_code, missing.text)
        assert not_a_venue.status_code == 404
        assert await pool.fetchval("SELECT count(*) FROM oauth_states") == 0
        own = await b.start(OTHER_VENUE)
        assert own.status_code == 303
        assert own.headers["Location"].startswith(b.world.url)


async def test_a_bearer_token_starts_a_connection_and_a_bad_one_is_401(
        pool: asyncpg.Pool, db_url: str, tmp_path: Path) -> None:
    async with browser(pool, db_url, tmp_path, "mailchimp") as b:
        good = await b.http.get("/oauth/mailchimp/start", params={"venue": VENUE},
                                headers={"Authorization": f"Bearer {token(role='platform_admin')}"})
        assert good.status_code == 303
        bad = await b.http.get("/oauth/mailchimp/start", params={"venue": VENUE},
                               headers={"Authorization": "Bearer nope"})
        assert bad.status_code == 401
        assert await pool.fetchval("SELECT count(*) FROM oauth_states") == 1


async def test_without_a_vault_the_routes_answer_503(pool: asyncpg.Pool,
                                                     tmp_path: Path) -> None:
    await ws.connect_venues(pool)
    settings = ws.settings(tmp_path, api_jwt_secret=SECRET, api_jwt_issuer=ISSUER,
                           api_jwt_audience=AUDIENCE)
    app = create_app(pool=pool, providers=ws.providers(), settings=settings,
                     secrets=ReferenceWebhookSecrets(pool))
    async with listening(app, settings, host="127.0.0.1", port=0) as url, \
            httpx.AsyncClient(base_url=url) as http:
        response = await http.get(
            "/oauth/square/start", params={"venue": str(ws.VENUE_SQUARE)},
            headers={"Authorization": f"Bearer {token(role='platform_admin')}"})
        assert response.status_code == 503
        assert "not configured" in response.text
