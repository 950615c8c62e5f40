"""The credential store: what a provider plugin needs to act for one venue.

Everything that hands secrets to plugins goes through :class:`CredentialStore`, so the
encrypted token vault slots in behind the same two calls later:

- ``get(venue_id, provider)`` returns :class:`~daemon.provider.Credentials`;
- ``refresh(venue_id, provider)`` returns fresh credentials after an auth error, or None
  when there is nothing to refresh (the integration then goes to ``error``).

Webhook signing secrets are apart (:class:`WebhookSecrets`): only the webhook endpoint
needs them, so a missing one never stops a push.

:class:`ReferenceCredentialStore` resolves the references an integration's ``credentials``
column holds (``env:NAME``, ``file:PATH``) within a
:class:`~daemon.credential_scope.CredentialScope`; a value ``oauth`` is answered by a
:class:`TokenSource` (tests and emulators provide one today; the vault tomorrow). Secret
values never appear in logs, errors or ``repr``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import asyncpg

from daemon.credential_scope import DEFAULT_SCOPE, CredentialError, CredentialScope
from daemon.logs import get_logger
from daemon.provider import Credentials

__all__ = [
    "CredentialError",
    "CredentialScope",
    "CredentialStore",
    "EmulatorTokens",
    "ReferenceCredentialStore",
    "StaticTokens",
    "TokenSource",
    "WebhookSecrets",
    "resolve_reference",
]

log = get_logger("syncd.credentials")

#: Credential keys that are secrets and go to the matching :class:`Credentials` field.
_SECRET_FIELDS = ("access_token", "api_key")
#: ``token: env:NAME`` (or ``file:``) gives the access token directly.
_TOKEN = "token"  # noqa: S105 - a credential key name, not a value
#: The webhook signing secret: never part of :class:`Credentials`.
_WEBHOOK_SECRET = "webhook_secret"  # noqa: S105 - a key name


@runtime_checkable
class CredentialStore(Protocol):
    """Answers "what does this plugin need for this venue"."""

    async def get(self, venue_id: str, provider: str) -> Credentials:
        """Current credentials; :class:`CredentialError` when they cannot be had."""
        ...

    async def refresh(self, venue_id: str, provider: str) -> Credentials | None:
        """Fresh credentials after the provider refused the current ones, or None."""
        ...


@runtime_checkable
class WebhookSecrets(Protocol):
    """Answers "which secret signs this provider's webhooks for this venue"."""

    async def webhook_secret(self, venue_id: str, provider: str) -> str | None:
        """The signing secret; None when none is configured; :class:`CredentialError` when
        one is configured but cannot be read."""
        ...


@runtime_checkable
class TokenSource(Protocol):
    """Where OAuth tokens come from (tests and emulators now, the token vault later)."""

    async def token(self, venue_id: str, provider: str) -> Credentials | None:
        ...

    async def refresh(self, venue_id: str, provider: str) -> Credentials | None:
        ...


@dataclass
class StaticTokens:
    """Tokens handed over directly, keyed by (venue id, provider); for tests and demos.

    ``refresher`` is called on refresh (an emulator's token endpoint, say); without it a
    refresh returns None.
    """

    tokens: dict[tuple[str, str], Credentials] = field(default_factory=dict)
    refresher: Callable[[str, str], Awaitable[Credentials | None]] | None = None

    def put(self, venue_id: str, provider: str, credentials: Credentials) -> None:
        self.tokens[(str(venue_id), provider)] = credentials

    async def token(self, venue_id: str, provider: str) -> Credentials | None:
        return self.tokens.get((str(venue_id), provider))

    async def refresh(self, venue_id: str, provider: str) -> Credentials | None:
        if self.refresher is None:
            return None
        fresh = await self.refresher(str(venue_id), provider)
        if fresh is not None:
            self.put(venue_id, provider, fresh)
        return fresh


class EmulatorTokens:
    """Tokens from local emulators' ``GET /_emulator/credentials`` (demos, acceptance tests).

    Only for providers with a base URL override pointing at an emulator; a real provider has
    no such endpoint. A refresh asks again: emulators hand out a valid token each time.
    """

    def __init__(self, base_urls: Mapping[str, str], timeout: float = 10.0) -> None:
        self.base_urls = dict(base_urls)
        self.timeout = timeout
        self._cache: dict[str, Credentials] = {}

    def _base(self, venue_id: str, provider: str) -> str | None:
        """The emulator of this venue's integration (``provider/venue-id``, else
        ``provider``): each venue may have an emulator account of its own."""
        return self.base_urls.get(f"{provider}/{venue_id}") or self.base_urls.get(provider)

    async def token(self, venue_id: str, provider: str) -> Credentials | None:
        base = self._base(venue_id, provider)
        if not base:
            return None
        cached = self._cache.get(base)
        if cached is not None:
            return cached
        return await self._fetch(base)

    async def _fetch(self, base: str) -> Credentials | None:
        import httpx

        async with httpx.AsyncClient(timeout=self.timeout) as http:
            response = await http.get(base.rstrip("/") + "/_emulator/credentials")
        if response.status_code != 200:
            return None
        data = response.json()
        credentials = Credentials(access_token=data.get("access_token"),
                                  api_key=data.get("api_key"),
                                  account={str(k): str(v) for k, v in
                                           (data.get("account") or {}).items()})
        self._cache[base] = credentials
        return credentials

    async def refresh(self, venue_id: str, provider: str) -> Credentials | None:
        base = self._base(venue_id, provider)
        if not base:
            return None
        self._cache.pop(base, None)
        return await self._fetch(base)


def resolve_reference(key: str, reference: str, scope: CredentialScope = DEFAULT_SCOPE) -> str:
    """The secret a reference points at, within ``scope``. ``key`` names it in errors; the
    value never does."""
    return scope.read(key, reference)


def _scope_from_settings() -> CredentialScope:
    from daemon.settings import Settings

    return CredentialScope.from_settings(Settings())


class ReferenceCredentialStore:
    """Credentials from ``integration_configs.credentials`` references plus a token source.

    The column holds ``{"api_key": "env:SQUARE_KEY", "access_token": "oauth",
    "account": {"realm_id": "123"}}``: secret keys are references (or ``oauth``), and
    ``account`` holds non-secret facts, each a plain value or a reference. References are
    resolved within ``scope`` (by default the one the settings give).
    """

    def __init__(self, pool: asyncpg.Pool, tokens: TokenSource | None = None,
                 scope: CredentialScope | None = None) -> None:
        self.pool = pool
        self.tokens = tokens
        self.scope = scope if scope is not None else _scope_from_settings()
        self._locks: dict[tuple[str, str], asyncio.Lock] = {}

    async def _references(self, venue_id: str, provider: str) -> Mapping[str, Any]:
        async with self.pool.acquire() as conn:
            row = await conn.fetchval(
                "SELECT credentials FROM integration_configs "
                "WHERE venue_id = $1::uuid AND provider = $2", str(venue_id), provider)
        if row is None:
            raise CredentialError(f"no {provider} integration for venue {venue_id}")
        if not isinstance(row, Mapping):
            raise CredentialError(f"the {provider} credentials of venue {venue_id} "
                                  "are not an object")
        return row

    async def get(self, venue_id: str, provider: str) -> Credentials:
        refs = await self._references(venue_id, provider)
        secrets: dict[str, str | None] = dict.fromkeys(_SECRET_FIELDS)
        others: dict[str, str] = {}
        account: dict[str, str] = {}
        wants_oauth = False
        for key, value in refs.items():
            if key == "account" and isinstance(value, Mapping):
                for name, fact in value.items():
                    text = str(fact)
                    account[str(name)] = (self.scope.read(f"account.{name}", text)
                                          if text.startswith(("env:", "file:")) else text)
            elif key == _WEBHOOK_SECRET:
                continue  # only the webhook endpoint needs it: see webhook_secret()
            elif value == "oauth":
                wants_oauth = True
            elif not isinstance(value, str):
                raise CredentialError(f"credential {key!r} must be a reference string")
            elif key in _SECRET_FIELDS:
                secrets[key] = self.scope.read(key, value)
            else:
                others[key] = self.scope.read(key, value)
        direct = others.pop(_TOKEN, None)
        secrets["access_token"] = secrets["access_token"] or direct
        expires_at = None
        if wants_oauth:
            token = await self.tokens.token(venue_id, provider) if self.tokens else None
            if token is None:
                raise CredentialError(
                    f"no OAuth token for the {provider} integration of venue {venue_id}; "
                    "connect it first")
            secrets["access_token"] = token.access_token
            secrets["api_key"] = secrets["api_key"] or token.api_key
            account = {**token.account, **account}
            expires_at = token.expires_at
        log.debug("credentials.resolved", venue_id=str(venue_id), provider=provider,
                  keys=sorted(k for k, v in secrets.items() if v), oauth=wants_oauth)
        return Credentials(access_token=secrets["access_token"], api_key=secrets["api_key"],
                           account=account, expires_at=expires_at, secrets=others)

    async def webhook_secret(self, venue_id: str, provider: str) -> str | None:
        """The integration's ``webhook_secret``; None when it has none."""
        refs = await self._references(venue_id, provider)
        reference = refs.get(_WEBHOOK_SECRET)
        if reference is None:
            return None
        if not isinstance(reference, str):
            raise CredentialError(f"credential {_WEBHOOK_SECRET!r} must be a reference string")
        return self.scope.read(_WEBHOOK_SECRET, reference)

    async def refresh(self, venue_id: str, provider: str) -> Credentials | None:
        """Single-flight per integration: concurrent callers share one refresh."""
        key = (str(venue_id), provider)
        lock = self._locks.setdefault(key, asyncio.Lock())
        async with lock:
            refs = await self._references(venue_id, provider)
            if "oauth" not in refs.values() or self.tokens is None:
                log.info("credentials.refresh_unavailable", venue_id=str(venue_id),
                         provider=provider)
                return None
            fresh = await self.tokens.refresh(venue_id, provider)
            log.info("credentials.refreshed", venue_id=str(venue_id), provider=provider,
                     ok=fresh is not None)
            if fresh is None:
                return None
            return await self.get(venue_id, provider)
