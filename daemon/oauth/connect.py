"""Connecting an integration through OAuth: the authorize URL, then the callback.

:class:`OAuthService` is what ``syncd oauth url`` / ``syncd oauth complete`` and the HTTP
app's ``GET /oauth/{provider}/start`` / ``/oauth/{provider}/callback`` call.

- ``start`` stores a 256-bit random state in ``oauth_states`` (Postgres, so any replica can
  take the callback), bound to the venue, provider and requesting user, valid ten minutes;
  with PKCE (S256) the verifier is sealed beside it.
- ``complete`` takes the state once (a second use is refused even if the first failed),
  checks it, exchanges the code, stores the tokens sealed with their expiry and scopes and
  what the provider returned with them (QuickBooks ``realmId``, Square ``merchant_id``,
  Mailchimp's data centre from its metadata endpoint, Stripe's account), marks the
  integration ``connected``, writes an ``oauth_completed`` sync log and queues the initial
  sync on the HIGH lane, all in one transaction. Any refusal stores nothing.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

import asyncpg
import httpx

from daemon.logs import get_logger
from daemon.oauth.app import OAuthApp, OAuthError, oauth_app
from daemon.oauth.grants import exchange_code, fetch_metadata
from daemon.oauth.lifecycle import mark_connected
from daemon.plugins import Plugins, UnknownProvider
from daemon.queue.enqueue import enqueue
from daemon.settings import Settings
from daemon.sql import queries
from daemon.vault import rows
from daemon.vault.cipher import Vault
from daemon.vault.keys import VaultError
from daemon.vault.tokens import StoredToken, TokenVault

__all__ = ["STATE_TTL_SECONDS", "AuthorizeRequest", "Connected", "OAuthService", "pkce_pair"]

log = get_logger("syncd.oauth")
_Q = queries("vault.sql")

STATE_TTL_SECONDS = 600
_NOTHING = "nothing was stored"


def pkce_pair() -> tuple[str, str]:
    """A PKCE code verifier (86 characters) and its S256 challenge (RFC 7636)."""
    verifier = secrets.token_urlsafe(64)
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return verifier, base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


@dataclass(frozen=True, slots=True)
class AuthorizeRequest:
    """Where to send the venue's user; ``state`` identifies the request."""

    url: str
    state: str
    venue_id: str
    provider: str
    expires_at: datetime


@dataclass(frozen=True, slots=True)
class Connected:
    """A completed connection (no secret in it)."""

    venue_id: str
    provider: str
    account_id: str | None
    scopes: tuple[str, ...]
    expires_at: datetime | None
    job_id: int | None


class OAuthService:
    """Start and complete OAuth connections; see the module docstring."""

    def __init__(self, pool: asyncpg.Pool, vault: Vault, plugins: Plugins, settings: Settings,
                 *, base_urls: Mapping[str, str] | None = None,
                 http: httpx.AsyncClient | None = None) -> None:
        self.pool = pool
        self.vault = vault
        self.tokens = TokenVault(vault)
        self.plugins = plugins
        self.settings = settings
        self.base_urls = dict(base_urls or {})
        self.http = http

    async def _integration(self, conn: Any, venue: str, provider: str) -> asyncpg.Record:
        row = await conn.fetchrow(_Q["integration_for_venue"], venue, provider)
        if row is None:
            raise OAuthError(f"no {provider} integration for venue {venue}: add it to the "
                             "venue's YAML and run `syncd apply` first")
        return row

    def app(self, provider: str, environment: str) -> OAuthApp:
        try:
            found = self.plugins.provider(provider)
        except UnknownProvider as exc:
            raise OAuthError(str(exc)) from None
        return oauth_app(found, self.settings, environment=environment,
                         base_url=self.base_urls.get(provider))

    async def start(self, venue: str, provider: str, *, user: str) -> AuthorizeRequest:
        """Store a new state and build the provider's authorize URL."""
        async with self.pool.acquire() as conn:
            row = await self._integration(conn, venue, provider)
            venue_id = row["venue_id"]
            app = self.app(provider, row["environment"])
            state = secrets.token_urlsafe(32)
            params = {"response_type": "code", "client_id": app.client_id,
                      "redirect_uri": app.redirect_uri, "state": state}
            if app.spec.scopes:
                params["scope"] = " ".join(app.spec.scopes)
            sealed = None
            if app.spec.pkce:
                verifier, challenge = pkce_pair()
                params.update(code_challenge=challenge, code_challenge_method="S256")
                sealed = await self.vault.seal(verifier,
                                               rows.code_verifier(venue_id, provider, state))
            async with conn.transaction():
                await conn.execute(_Q["prune_states"])
                await conn.execute(_Q["insert_state"], state, venue_id, provider,
                                   app.redirect_uri, sealed.blob if sealed else None,
                                   sealed.version if sealed else None, user,
                                   float(STATE_TTL_SECONDS))
                expires = await conn.fetchval("SELECT expires_at FROM oauth_states "
                                              "WHERE state = $1", state)
        separator = "&" if "?" in app.authorize_url else "?"
        log.info("oauth.started", venue_id=venue_id, provider=provider, user=user,
                 pkce=app.spec.pkce)
        return AuthorizeRequest(app.authorize_url + separator + urlencode(params), state,
                                venue_id, provider, expires)

    async def complete_url(self, url: str, *, user: str | None = None,
                           venue: str | None = None) -> Connected:
        """Complete from the full callback URL the provider redirected to."""
        parts = urlsplit(url.strip())
        segments = [s for s in parts.path.split("/") if s]
        provider = None
        if len(segments) >= 3 and segments[-3] == "oauth" and segments[-1] == "callback":
            provider = segments[-2]
        if not parts.query:
            raise OAuthError("the URL has no query: paste the whole address the provider "
                             "redirected to, including ?code=...&state=...")
        return await self.complete(provider, dict(parse_qsl(parts.query)), user=user,
                                   venue=venue)

    async def _take_state(self, provider: str | None, params: Mapping[str, str],
                          user: str | None, venue: str | None) -> tuple[asyncpg.Record,
                                                                          str | None]:
        state = params.get("state")
        if not state:
            raise OAuthError(f"the callback carries no state; start again with `syncd oauth "
                             f"url`; {_NOTHING}")
        async with self.pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(_Q["take_state"], state)
            if row is None:
                raise OAuthError(f"unknown OAuth state; start again with `syncd oauth url`; "
                                 f"{_NOTHING}")
            if row["consumed_at"] is None:
                await conn.execute(_Q["consume_state"], state)
        where = f"the {row['provider']} connection of venue {row['venue_id']}"
        if row["consumed_at"] is not None:
            raise OAuthError(f"this OAuth state was already used; start {where} again; "
                             f"{_NOTHING}")
        if row["now"] >= row["expires_at"]:
            raise OAuthError(f"this OAuth state expired (states last ten minutes); start "
                             f"{where} again; {_NOTHING}")
        if provider is not None and provider != row["provider"]:
            raise OAuthError(f"this OAuth state is for {row['provider']}, not {provider}; "
                             f"{_NOTHING}")
        if venue is not None and venue != row["venue_id"]:
            async with self.pool.acquire() as conn:
                asked = await conn.fetchval(
                    "SELECT venue_id::text FROM integration_configs WHERE venue_name = $1 "
                    "LIMIT 1", venue)
            if asked != row["venue_id"]:
                raise OAuthError(f"this OAuth state is for another venue; {_NOTHING}")
        if user is not None and row["created_by"] not in (None, user):
            raise OAuthError(f"this OAuth state was started by another user; {_NOTHING}")
        error = params.get("error")
        if error:
            reason = ("consent was denied" if error == "access_denied"
                      else f"the provider answered {error!r}")
            raise OAuthError(f"{where} was not completed: {reason}; {_NOTHING}")
        code = params.get("code")
        if not code:
            raise OAuthError(f"the callback for {where} carries no code; {_NOTHING}")
        verifier = None
        if row["encrypted_code_verifier"] is not None:
            try:
                verifier = await self.vault.open(
                    row["encrypted_code_verifier"], row["encryption_key_version"],
                    rows.code_verifier(row["venue_id"], row["provider"], state))
            except VaultError as exc:
                raise OAuthError(f"{exc}; {_NOTHING}") from None
        return row, verifier

    async def complete(self, provider: str | None, params: Mapping[str, str], *,
                       user: str | None = None, venue: str | None = None) -> Connected:
        """Check the callback's state, exchange its code and store the connection."""
        row, verifier = await self._take_state(provider, params, user, venue)
        venue_id, name = row["venue_id"], row["provider"]
        async with self.pool.acquire() as conn:
            integration = await self._integration(conn, venue_id, name)
        app = self.app(name, integration["environment"])
        if row["redirect_uri"] != app.redirect_uri:
            raise OAuthError(f"the redirect URL changed since the {name} connection of venue "
                             f"{venue_id} started; start again; {_NOTHING}")
        http = self.http or httpx.AsyncClient(timeout=30.0)
        try:
            try:
                token, answer = await exchange_code(app, http, params["code"],
                                                    verifier=verifier)
                facts = {fact: str(answer[field]) for field, fact in app.dialect.facts
                         if answer.get(field)}
                facts.update({fact: params[p] for p, fact in app.callback_facts
                              if params.get(p)})
                if app.metadata_url:
                    facts.update(await fetch_metadata(app, http, token))
            except OAuthError as exc:
                raise OAuthError(f"{exc}; {_NOTHING}") from None
        finally:
            if self.http is None:
                await http.aclose()
        missing = [fact for p, fact in app.callback_facts if fact not in facts]
        if missing:
            raise OAuthError(f"the {name} callback did not carry {', '.join(missing)}; "
                             f"{_NOTHING}")
        account_id = facts.get(app.dialect.account_fact or "")
        token = StoredToken(token.access_token, token.refresh_token, token.expires_at,
                            token.refresh_token_expires_at, token.scopes, token.token_type,
                            account_id, facts)
        async with self.pool.acquire() as conn, conn.transaction():
            await self.tokens.save_token(conn, venue_id, name, token, created_by=row["created_by"])
            await mark_connected(conn, venue_id, name)
            details = {"account_id": account_id, "scopes": list(token.scopes),
                       "expires_at": token.expires_at.isoformat() if token.expires_at else None,
                       "user": row["created_by"]}
            await conn.execute(_Q["oauth_completed_log"], venue_id, name, json.loads(
                json.dumps(details)))
            job_id = await enqueue(conn, venue_id=uuid.UUID(venue_id), provider=name,
                                   entity_type="all", lane="HIGH",
                                   payload={"full": True, "reason": "oauth_completed"},
                                   idempotency_key=f"oauth-initial:{uuid.uuid4()}")
        log.info("oauth.completed", venue_id=venue_id, provider=name, account_id=account_id,
                 scopes=list(token.scopes), job_id=job_id)
        return Connected(venue_id, name, account_id, token.scopes, token.expires_at, job_id)
