"""Reading and writing sealed tokens and API keys (the vault's rows).

Values cross this module in clear only as :class:`StoredToken` fields, which never show in
``repr``; in the database they are ciphertext bound to their row (see :mod:`rows`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from daemon.sql import queries
from daemon.vault import rows
from daemon.vault.cipher import Vault

__all__ = ["API_KEY", "StoredToken", "TokenVault"]

_Q = queries("vault.sql")
API_KEY = "api_key"
Executor = Any  # an asyncpg Connection or Pool


@dataclass(frozen=True, slots=True)
class StoredToken:
    """An OAuth grant as stored: secrets hidden from ``repr``."""

    access_token: str = field(repr=False)
    refresh_token: str | None = field(default=None, repr=False)
    expires_at: datetime | None = None
    refresh_token_expires_at: datetime | None = None
    scopes: tuple[str, ...] = ()
    token_type: str = "Bearer"  # noqa: S105 - a scheme name, not a secret
    account_id: str | None = None
    #: Non-secret facts returned with the grant: realm_id, dc, merchant_id...
    account: Mapping[str, str] = field(default_factory=dict)


class TokenVault:
    """The sealed rows of ``oauth_tokens`` and ``venue_api_keys``."""

    def __init__(self, vault: Vault) -> None:
        self.vault = vault

    async def load_token(self, conn: Executor, venue_id: str, provider: str, *,
                         for_update: bool = False) -> StoredToken | None:
        row = await conn.fetchrow(_Q["token_row_for_update" if for_update else "token_row"],
                                  venue_id, provider)
        if row is None:
            return None
        version = row["encryption_key_version"]
        access = await self.vault.open(row["encrypted_access_token"], version,
                                       rows.access_token(venue_id, provider))
        refresh = None
        if row["encrypted_refresh_token"] is not None:
            refresh = await self.vault.open(row["encrypted_refresh_token"], version,
                                            rows.refresh_token(venue_id, provider))
        return StoredToken(access, refresh, row["expires_at"], row["refresh_token_expires_at"],
                           tuple(row["scopes"] or ()), row["token_type"], row["account_id"],
                           {str(k): str(v) for k, v in (row["account"] or {}).items()})

    async def _seal_pair(self, venue_id: str, provider: str, token: StoredToken
                         ) -> tuple[bytes, bytes | None, int]:
        access = await self.vault.seal(token.access_token, rows.access_token(venue_id, provider))
        refresh = None
        if token.refresh_token is not None:
            sealed = await self.vault.seal(token.refresh_token,
                                           rows.refresh_token(venue_id, provider))
            refresh = sealed.blob
        return access.blob, refresh, access.version

    async def save_token(self, conn: Executor, venue_id: str, provider: str,
                         token: StoredToken, *, created_by: str | None = None) -> None:
        access, refresh, version = await self._seal_pair(venue_id, provider, token)
        await conn.execute(_Q["save_token"], venue_id, provider, access, refresh, version,
                           list(token.scopes), token.token_type, token.account_id,
                           dict(token.account), token.expires_at,
                           token.refresh_token_expires_at, created_by)

    async def save_refreshed(self, conn: Executor, venue_id: str, provider: str,
                             token: StoredToken) -> None:
        access, refresh, version = await self._seal_pair(venue_id, provider, token)
        await conn.execute(_Q["save_refreshed_token"], venue_id, provider, access, refresh,
                           version, list(token.scopes) or None, token.expires_at,
                           token.refresh_token_expires_at)

    async def load_api_key(self, conn: Executor, venue_id: str, provider: str,
                           environment: str, key_name: str = API_KEY) -> str | None:
        row = await conn.fetchrow(_Q["api_key_row"], venue_id, provider, environment, key_name)
        if row is None:
            return None
        return await self.vault.open(row["encrypted_api_key"], row["encryption_key_version"],
                                     rows.api_key(venue_id, provider, environment, key_name))

    async def save_api_key(self, conn: Executor, venue_id: str, provider: str, *,
                           environment: str, value: str, key_name: str = API_KEY) -> None:
        sealed = await self.vault.seal(value, rows.api_key(venue_id, provider, environment,
                                                           key_name))
        await conn.execute(_Q["save_api_key"], venue_id, provider, environment, key_name,
                           sealed.blob, sealed.version)
