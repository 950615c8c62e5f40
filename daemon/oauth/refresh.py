"""Refreshing stored OAuth tokens: single-flight per integration across processes.

QuickBooks, and Square with PKCE, rotate refresh tokens: each refresh returns a new one and
invalidates the old. Two refreshers racing with the same old token would have one of them
fail, or worse, store an older token over a newer one. So a refresh

1. takes a Postgres advisory lock (transaction scope) on the integration, which every
   process and replica shares;
2. re-reads the stored token under that lock: if it is no longer the token the caller found
   stale (another refresher got there first), it is returned as is;
3. otherwise calls the token endpoint and stores the answer before the lock is released.

A refresh the provider refuses (``invalid_grant``, a revoked grant) marks the integration
``error`` with the reason and health ``unhealthy`` and calls ``syncd_integration_failed``.
A provider that cannot be reached raises :class:`~daemon.oauth.grants.GrantUnavailable`
(retry later) and changes nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta

import asyncpg
import httpx

from daemon.logs import get_logger
from daemon.oauth.connect import OAuthService
from daemon.oauth.grants import GrantRefused, refresh_grant
from daemon.oauth.lifecycle import mark_failed
from daemon.plugins import Plugins
from daemon.settings import Settings
from daemon.sql import queries
from daemon.vault.cipher import Vault
from daemon.vault.tokens import StoredToken, TokenVault

__all__ = ["LOCK_NAMESPACE", "Refresher"]

log = get_logger("syncd.oauth")
_Q = queries("vault.sql")

#: First key of the two-key advisory lock; the second is hashtext('venue/provider').
LOCK_NAMESPACE = 0x5359_4E43  # "SYNC"


class Refresher:
    """Refreshes stored tokens through the providers' token endpoints."""

    def __init__(self, pool: asyncpg.Pool, vault: Vault, plugins: Plugins, settings: Settings,
                 *, base_urls: Mapping[str, str] | None = None,
                 http: httpx.AsyncClient | None = None) -> None:
        self.pool = pool
        self.tokens = TokenVault(vault)
        self.plugins = plugins
        self.settings = settings
        self.apps = OAuthService(pool, vault, plugins, settings, base_urls=base_urls)
        self.http = http
        self.margin = timedelta(seconds=settings.oauth_refresh_margin_seconds)

    def _due(self, token: StoredToken) -> bool:
        return (token.expires_at is not None
                and token.expires_at - self.margin <= datetime.now(UTC))

    async def refresh(self, venue_id: str, provider: str, *, stale: str | None
                      ) -> StoredToken | None:
        """The current token, refreshed unless someone else already replaced ``stale``.

        ``stale`` is the access token the caller found expiring or refused; None refreshes
        only when the stored one is due.
        """
        venue_id = str(venue_id)
        refused: str | None = None
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1, hashtext($2))",
                               LOCK_NAMESPACE, f"{venue_id}/{provider}")
            current = await self.tokens.load_token(conn, venue_id, provider, for_update=True)
            if current is None:
                return None
            if stale is not None and current.access_token != stale:
                log.info("oauth.refresh_shared", venue_id=venue_id, provider=provider)
                return current
            if stale is None and not self._due(current):
                return current
            environment = await conn.fetchval(
                "SELECT environment FROM integration_configs WHERE venue_id = $1::uuid "
                "AND provider = $2", venue_id, provider) or "production"
            app = self.apps.app(provider, environment)
            http = self.http or httpx.AsyncClient(timeout=30.0)
            try:
                fresh = await refresh_grant(app, http, current)
            except GrantRefused as exc:
                refused = str(exc)
            finally:
                if self.http is None:
                    await http.aclose()
            if refused is None:
                await self.tokens.save_refreshed(conn, venue_id, provider, fresh)
                log.info("oauth.refreshed", venue_id=venue_id, provider=provider,
                         rotated=fresh.refresh_token != current.refresh_token,
                         expires_at=fresh.expires_at.isoformat() if fresh.expires_at else None)
                return fresh
        async with self.pool.acquire() as conn:
            await conn.execute(_Q["token_refresh_failed"], venue_id, provider)
        reason = f"OAuth token refresh failed for good: {refused}; connect it again"
        log.error("oauth.refresh_failed", venue_id=venue_id, provider=provider, reason=refused)
        await mark_failed(self.pool, self.plugins, venue_id, provider, reason)
        return None


