"""Disconnecting an integration: revoke at the provider, delete what is stored, say so.

Where the provider offers a revoke endpoint (Square, QuickBooks, Stripe's deauthorize) the
grant is revoked first; Mailchimp offers none, so its token is only deleted (the venue can
remove the app in Mailchimp). A grant the provider no longer knows counts as revoked. When
the provider cannot be reached nothing changes, unless revoking is skipped on purpose.
"""

from __future__ import annotations

from dataclasses import dataclass

import httpx

from daemon.logs import get_logger
from daemon.oauth.app import OAuthError
from daemon.oauth.connect import OAuthService
from daemon.oauth.grants import GrantRefused, revoke
from daemon.oauth.lifecycle import mark_disconnected
from daemon.sql import queries
from daemon.vault.keys import VaultError
from daemon.vault.tokens import TokenVault

__all__ = ["Disconnected", "disconnect"]

log = get_logger("syncd.oauth")
_Q = queries("vault.sql")


@dataclass(frozen=True, slots=True)
class Disconnected:
    venue_id: str
    provider: str
    #: "revoked", "already revoked", "no revoke endpoint", "skipped" or "no grant".
    revocation: str
    tokens_deleted: int
    keys_deleted: int


async def disconnect(service: OAuthService, venue: str, provider: str, *,
                     revoke_grant: bool = True, http: httpx.AsyncClient | None = None
                     ) -> Disconnected:
    """Revoke (where offered), delete stored tokens and keys, mark ``disconnected``.

    ``service`` supplies the pool, vault, plugins and settings of the OAuth apps.
    """
    pool, vault = service.pool, service.vault
    async with pool.acquire() as conn:
        row = await conn.fetchrow(_Q["integration_for_venue"], venue, provider)
        if row is None:
            raise OAuthError(f"no {provider} integration for venue {venue}")
        venue_id = row["venue_id"]
        try:
            token = await TokenVault(vault).load_token(conn, venue_id, provider)
        except VaultError as exc:
            if revoke_grant:
                raise OAuthError(f"{exc}; cannot revoke it: use --no-revoke to delete it "
                                 "anyway") from None
            token = None
    revocation = "no grant"
    if token is not None and not revoke_grant:
        revocation = "skipped"
    elif token is not None:
        app = service.app(provider, row["environment"])
        client = http or httpx.AsyncClient(timeout=30.0)
        try:
            revocation = "revoked" if await revoke(app, client, token) else "no revoke endpoint"
        except GrantRefused as exc:
            log.warning("oauth.revoke_refused", venue_id=venue_id, provider=provider,
                        reason=str(exc))
            revocation = "already revoked"
        except OAuthError as exc:
            raise OAuthError(f"{exc}; nothing was changed (retry, or use --no-revoke to "
                             "delete the token without revoking it)") from None
        finally:
            if http is None:
                await client.aclose()
    async with pool.acquire() as conn, conn.transaction():
        tokens = await conn.execute(_Q["delete_tokens"], venue_id, provider)
        keys = await conn.execute(_Q["delete_api_keys"], venue_id, provider)
        await mark_disconnected(conn, venue_id, provider)
    done = Disconnected(venue_id, provider, revocation, int(tokens.split()[-1]),
                        int(keys.split()[-1]))
    log.info("oauth.disconnected", venue_id=venue_id, provider=provider,
             revocation=revocation, tokens_deleted=done.tokens_deleted,
             keys_deleted=done.keys_deleted)
    return done
