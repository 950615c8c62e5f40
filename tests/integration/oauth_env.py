"""A venue's integration, its provider's emulator and the OAuth service, for OAuth tests."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import asyncpg
import httpx

from daemon.oauth.connect import OAuthService
from daemon.oauth.refresh import Refresher
from daemon.plugins import Plugins, load_plugins
from daemon.provider import EmulatorSettings, Provider
from daemon.settings import OAuthClient, Settings
from daemon.testing.emulator import Emulator, EmulatorServer
from daemon.vault import Vault
from daemon.vault.keys import format_key, generate_key
from daemon.vault.provider import load_vault
from daemon.vault.store import VaultCredentialStore, build_credential_store

KEYS = format_key(1, generate_key())
VENUE = "3b0f6c1e-8d2a-4f6b-9c41-5a7e2d9f1b03"
OTHER_VENUE = "5c9a1e3b-7d2f-4b6a-8e0c-4f1d2a3b5c67"
OAUTH_PROVIDERS = ("square", "quickbooks", "mailchimp", "stripe")

_CLIENTS = {
    "square": ("sq0idp-emulator", "sq0csp-emulator-secret"),
    "quickbooks": ("emulated-client-id", "emulated-client-secret"),
    "mailchimp": ("mc-emulated-client", "mc-emulated-secret"),
    "stripe": ("ca_emulator", None),  # the platform's secret key, read from the emulator
}


class WithPkce:
    """A provider whose OAuth declares PKCE and rotating refresh tokens (Square's PKCE flow)."""

    def __init__(self, inner: Provider) -> None:
        self._inner = inner
        self.name = inner.name
        caps = inner.capabilities
        assert caps.oauth is not None
        self.capabilities = dataclasses.replace(
            caps, oauth=dataclasses.replace(caps.oauth, pkce=True, rotates_refresh_token=True))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


@dataclass
class OAuthWorld:
    pool: asyncpg.Pool
    provider: str
    url: str
    emulator: Emulator
    settings: Settings
    plugins: Plugins
    vault: Vault
    service: OAuthService
    http: httpx.AsyncClient

    @property
    def base_urls(self) -> dict[str, str]:
        return {self.provider: self.url}

    def refresher(self) -> Refresher:
        return Refresher(self.pool, self.vault, self.plugins, self.settings,
                         base_urls=self.base_urls)

    def store(self) -> VaultCredentialStore:
        return build_credential_store(self.pool, settings=self.settings, plugins=self.plugins,
                                      base_urls=self.base_urls)

    async def consent(self, authorize_url: str) -> str:
        """Follow the authorize URL as the venue's user who says yes: the callback URL."""
        response = await self.http.get(authorize_url, follow_redirects=False)
        assert response.status_code == 302, response.text
        return response.headers["Location"]

    async def connect(self, venue: str = VENUE) -> Any:
        request = await self.service.start(venue, self.provider, user="ops")
        return await self.service.complete_url(await self.consent(request.url), user="ops")

    async def count(self, table: str) -> int:
        return int(await self.pool.fetchval(f"SELECT count(*) FROM {table}"))


@asynccontextmanager
async def oauth_world(pool: asyncpg.Pool, db_url: str, provider: str, *, pkce: bool = False,
                      settings: EmulatorSettings | None = None) -> AsyncIterator[OAuthWorld]:
    plugins = load_plugins([provider])
    if pkce:
        plugins.providers[provider] = WithPkce(plugins.providers[provider])  # type: ignore[assignment]
    found = plugins.provider(provider)
    async with (EmulatorServer(found.emulator(settings or EmulatorSettings(seed=5))) as server,
                httpx.AsyncClient(timeout=30) as http):
        assert server.emulator is not None
        client_id, secret = _CLIENTS[provider]
        if secret is None:
            secret = (await http.get(server.url + "/_emulator/credentials")).json()["api_key"]
        app_settings = Settings(
            _env_file=None, database_url=db_url, encryption_keys=KEYS,
            oauth_clients={provider: OAuthClient(client_id=client_id, client_secret=secret)})
        vault = load_vault(plugins, app_settings)
        for venue, name in ((VENUE, "The Laugh Track"), (OTHER_VENUE, "Old Town Theatre")):
            await pool.execute(
                "INSERT INTO integration_configs (venue_id, provider, venue_name, credentials) "
                "VALUES ($1, $2, $3, $4)", uuid.UUID(venue), provider, name,
                {"token": "oauth"})
        service = OAuthService(pool, vault, plugins, app_settings,
                               base_urls={provider: server.url})
        yield OAuthWorld(pool, provider, server.url, server.emulator, app_settings, plugins,
                         vault, service, http)
