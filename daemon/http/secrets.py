"""Where per-venue webhook secrets come from.

The HTTP layer needs two things for a delivery to ``/webhooks/{provider}/{venue}``: the
signing secret the venue's config gives for that provider (``credentials.webhook_secret``),
and, for providers that may not sign (Mailchimp audience webhooks), the secret token in the
registered URL (``credentials.token``). :class:`VenueWebhookSecrets` is that need as a
protocol; :class:`ReferenceWebhookSecrets` answers it from the integration's credential
references. Values are resolved per call, never cached in clear, and never logged.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import asyncpg

from daemon.credential_scope import DEFAULT_SCOPE, CredentialScope
from daemon.credentials import CredentialError, resolve_reference
from daemon.errors import SyncdError
from daemon.logs import get_logger
from daemon.sql import queries

__all__ = [
    "ReferenceWebhookSecrets",
    "VenueSecrets",
    "VenueWebhookSecrets",
    "WebhookSecretUnavailable",
]

log = get_logger("syncd.http")
_Q = queries("webhooks.sql")


class WebhookSecretUnavailable(SyncdError):
    """A secret cannot be had now: an unreadable file, an unset variable, the database down."""


@dataclass(frozen=True, slots=True)
class VenueSecrets:
    """A venue's webhook secrets for one provider; ``repr`` never shows them."""

    signing_secret: str | None = field(default=None, repr=False)
    url_token: str | None = field(default=None, repr=False)


@runtime_checkable
class VenueWebhookSecrets(Protocol):
    """What the webhook routes ask of the credential store."""

    async def venue_webhook_secrets(self, venue_id: uuid.UUID,
                                    provider: str) -> VenueSecrets | None:
        """The venue's secrets for ``provider``; None when the venue has no such integration.
        Raises :class:`WebhookSecretUnavailable` when a configured one cannot be resolved."""
        ...


def _resolve(key: str, reference: Any, scope: CredentialScope) -> str | None:
    if not isinstance(reference, str) or not reference.startswith(("env:", "file:")):
        return None  # "oauth" or absent: not a webhook secret
    try:
        return resolve_reference(key, reference, scope)
    except CredentialError as exc:
        raise WebhookSecretUnavailable(str(exc)) from None


class ReferenceWebhookSecrets:
    """Secrets from ``integration_configs.credentials`` references (``env:``, ``file:``)."""

    def __init__(self, pool: asyncpg.Pool, *, timeout: float = 5.0,
                 scope: CredentialScope = DEFAULT_SCOPE) -> None:
        self.pool = pool
        self.timeout = timeout
        self.scope = scope

    async def venue_webhook_secrets(self, venue_id: uuid.UUID,
                                    provider: str) -> VenueSecrets | None:
        try:
            async with self.pool.acquire(timeout=self.timeout) as conn:
                refs = await conn.fetchval(_Q["venue_credentials"], str(venue_id), provider,
                                           timeout=self.timeout)
        except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            raise WebhookSecretUnavailable(
                f"the venue's webhook secrets cannot be read now ({type(exc).__name__})"
            ) from None
        if refs is None:
            return None
        if not isinstance(refs, Mapping):
            refs = {}
        return VenueSecrets(
            signing_secret=_resolve("webhook_secret", refs.get("webhook_secret"), self.scope),
            url_token=_resolve("token", refs.get("token"), self.scope))
