"""The credential store syncd runs with: the vault first, references after.

:class:`VaultCredentialStore` implements :class:`daemon.credentials.CredentialStore`:

1. an OAuth token stored for the integration (by ``syncd oauth complete`` or the HTTP
   callback) answers, refreshed first when it expires within the margin;
2. else an API key stored with ``syncd credentials set`` answers;
3. else the integration's references (``env:``, ``file:``) are resolved by the
   :class:`~daemon.credentials.ReferenceCredentialStore` it wraps.

After a provider refuses the credentials (401), ``refresh`` refreshes a stored OAuth token
(single-flight, see :mod:`daemon.oauth.refresh`), or marks a stored API key invalid.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol

import asyncpg

from daemon.credential_scope import DEFAULT_SCOPE, CredentialScope
from daemon.credentials import (
    CredentialError,
    CredentialStore,
    ReferenceCredentialStore,
    TokenSource,
    resolve_reference,
)
from daemon.errors import SyncdError
from daemon.logs import get_logger
from daemon.provider import Credentials
from daemon.sql import queries
from daemon.vault.cipher import Vault
from daemon.vault.keys import NoEncryptionKey, VaultError
from daemon.vault.tokens import API_KEY, StoredToken, TokenVault

if TYPE_CHECKING:
    from daemon.plugins import Plugins
    from daemon.settings import Settings

__all__ = [
    "TokenRefresher",
    "VaultCredentialStore",
    "account_facts",
    "build_credential_store",
]

log = get_logger("syncd.credentials")
_Q = queries("vault.sql")


class TokenRefresher(Protocol):
    """Refreshes a stored OAuth token (see :class:`daemon.oauth.refresh.Refresher`)."""

    async def refresh(self, venue_id: str, provider: str, *, stale: str | None
                      ) -> StoredToken | None:
        """The current token after making sure it is not ``stale``; None when it cannot be
        refreshed (the integration is then marked ``error``)."""
        ...


def account_facts(refs: Mapping[str, Any],
                  scope: CredentialScope = DEFAULT_SCOPE) -> dict[str, str]:
    """An integration's non-secret account facts, references resolved within ``scope``."""
    account = refs.get("account")
    facts: dict[str, str] = {}
    if isinstance(account, Mapping):
        for name, fact in account.items():
            text = str(fact)
            facts[str(name)] = (resolve_reference(f"account.{name}", text, scope)
                                if text.startswith(("env:", "file:")) else text)
    return facts


class VaultCredentialStore:
    """Stored tokens and keys from the vault, references from the wrapped store."""

    def __init__(self, pool: asyncpg.Pool, vault: Vault | None, fallback: CredentialStore, *,
                 refresher: TokenRefresher | None = None, margin_seconds: float = 300.0,
                 no_vault_reason: str = "no encryption key configured",
                 scope: CredentialScope = DEFAULT_SCOPE) -> None:
        self.pool = pool
        self.scope = scope
        self.vault = vault
        self.tokens = TokenVault(vault) if vault is not None else None
        self.fallback = fallback
        self.refresher = refresher
        self.margin = timedelta(seconds=margin_seconds)
        self.no_vault_reason = no_vault_reason

    def _need_tokens(self) -> TokenVault:
        if self.tokens is None:
            raise CredentialError(f"stored secrets cannot be read: {self.no_vault_reason}")
        return self.tokens

    async def _integration(self, conn: Any, venue_id: str, provider: str) -> asyncpg.Record:
        row = await conn.fetchrow(_Q["integration_refs"], str(venue_id), provider)
        if row is None:
            raise CredentialError(f"no {provider} integration for venue {venue_id}")
        return row

    async def _has(self, conn: Any, venue_id: str, provider: str, env: str
                   ) -> tuple[bool, bool]:
        token = await conn.fetchval("SELECT true FROM oauth_tokens WHERE venue_id = $1::uuid "
                                    "AND provider = $2", venue_id, provider)
        key = await conn.fetchval(_Q["api_key_row"], venue_id, provider, env, API_KEY)
        return bool(token), key is not None

    async def get(self, venue_id: str, provider: str) -> Credentials:
        venue_id = str(venue_id)
        async with self.pool.acquire() as conn:
            row = await self._integration(conn, venue_id, provider)
            refs = row["credentials"] or {}
            has_token, has_key = await self._has(conn, venue_id, provider, row["environment"])
            token = key = None
            try:
                if has_token:
                    token = await self._need_tokens().load_token(conn, venue_id, provider)
                elif has_key:
                    key = await self._need_tokens().load_api_key(conn, venue_id, provider,
                                                                 row["environment"])
            except VaultError as exc:
                raise CredentialError(str(exc)) from None
        if token is not None:
            if self._expiring(token) and self.refresher is not None:
                try:
                    fresh = await self.refresher.refresh(venue_id, provider,
                                                         stale=token.access_token)
                except SyncdError:
                    # The provider could not be asked; the token still works until it expires.
                    if token.expires_at is None or token.expires_at <= datetime.now(UTC):
                        raise
                    fresh = token
                if fresh is None:
                    raise CredentialError(f"the {provider} token of venue {venue_id} expired "
                                          "and could not be refreshed; connect it again")
                token = fresh
            log.debug("credentials.resolved", venue_id=venue_id, provider=provider,
                      source="vault", kind="oauth")
            return Credentials(access_token=token.access_token,
                               account={**token.account, **account_facts(refs, self.scope)},
                               expires_at=token.expires_at)
        if key is not None:
            log.debug("credentials.resolved", venue_id=venue_id, provider=provider,
                      source="vault", kind="api_key")
            return Credentials(api_key=key, account=account_facts(refs, self.scope))
        if "oauth" in refs.values() and getattr(self.fallback, "tokens", None) is None:
            raise CredentialError(
                f"no OAuth token for the {provider} integration of venue {venue_id}; connect "
                f"it with `syncd oauth url {venue_id} {provider}`")
        return await self.fallback.get(venue_id, provider)

    def _expiring(self, token: StoredToken) -> bool:
        if token.expires_at is None:
            return False
        return token.expires_at - self.margin <= datetime.now(UTC)

    async def refresh(self, venue_id: str, provider: str) -> Credentials | None:
        venue_id = str(venue_id)
        async with self.pool.acquire() as conn:
            row = await self._integration(conn, venue_id, provider)
            has_token, has_key = await self._has(conn, venue_id, provider, row["environment"])
            if has_key and not has_token:
                await conn.execute(_Q["api_key_validated"], venue_id, provider,
                                   row["environment"], API_KEY, False,
                                   f"refused by {provider} at "
                                   f"{datetime.now(UTC):%Y-%m-%d %H:%M:%S} UTC")
                log.warning("credentials.api_key_refused", venue_id=venue_id,
                            provider=provider)
                return None
            stale = None
            if has_token:
                try:
                    current = await self._need_tokens().load_token(conn, venue_id, provider)
                except VaultError as exc:
                    raise CredentialError(str(exc)) from None
                stale = current.access_token if current is not None else None
        if not has_token:
            return await self.fallback.refresh(venue_id, provider)
        if self.refresher is None:
            return None
        fresh = await self.refresher.refresh(venue_id, provider, stale=stale)
        if fresh is None:
            return None
        return await self.get(venue_id, provider)


def build_credential_store(pool: asyncpg.Pool, tokens: TokenSource | None = None, *,
                           settings: Settings | None = None, plugins: Plugins | None = None,
                           base_urls: Mapping[str, str] | None = None) -> VaultCredentialStore:
    """The store every command and worker uses: the vault (when a key is configured), OAuth
    refresh through the providers' token endpoints, and references behind them."""
    from daemon.oauth.refresh import Refresher
    from daemon.plugins import load_plugins
    from daemon.settings import Settings
    from daemon.vault.provider import load_vault

    settings = settings or Settings()
    plugins = plugins or load_plugins(settings.plugins)
    vault: Vault | None
    reason = ""
    try:
        vault = load_vault(plugins, settings, create_key=False)
    except NoEncryptionKey as exc:
        vault, reason = None, str(exc)
    refresher = None
    if vault is not None:
        refresher = Refresher(pool, vault, plugins, settings, base_urls=base_urls or {})
    scope = CredentialScope.from_settings(settings)
    return VaultCredentialStore(pool, vault, ReferenceCredentialStore(pool, tokens, scope),
                                refresher=refresher,
                                margin_seconds=settings.oauth_refresh_margin_seconds,
                                no_vault_reason=reason, scope=scope)
