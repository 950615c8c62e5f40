"""Deterministic idempotency keys: what makes a retry replay and a new request apply.

A key names one intended change at the provider:

- a **create** is keyed by identity (integration, entity, local id, operation), by the
  remote record it replaces, if any (a link whose remote record was deleted), and by the time
  the provider last refused it, if it did. It does not follow the record's content: a create
  the provider committed but syncd did not record is retried with the same key even when the
  record changed meanwhile, so the provider replays (or refuses) it instead of creating a
  second remote record;
- an **update**, **delete** or **archive** is keyed by identity, by the remote state it starts
  from (remote id, remote version, the content hash syncd last stored and when it stored it)
  and, for an update, by the new content. A retry of the same change replays; an edit
  A -> B -> A gets a new key for the second A because it starts from B, so the provider
  applies it instead of replaying A's first answer. The time of the last stored sync tells
  apart two updates from equal states (X -> A, A -> X, X -> A again) where the provider
  keeps no version (a Stripe customer).

32 hex characters fit every provider's limit (QuickBooks batch request ids take 36, Square
payments 45).
"""

from __future__ import annotations

import hashlib
from datetime import datetime

__all__ = ["KEY_LENGTH", "create_key", "idempotency_key", "update_key"]

KEY_LENGTH = 32


def idempotency_key(venue_id: str, provider: str, entity: str, local_id: str,
                    *parts: str, operation: str) -> str:
    """A stable key for (integration, entity, local id, operation, ``parts``)."""
    text = "\x1f".join((str(venue_id), provider, entity, local_id, operation, *parts))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:KEY_LENGTH]


def create_key(venue_id: str, provider: str, entity: str, local_id: str, *,
               replaces: str | None = None, refused_at: datetime | None = None) -> str:
    """The key of creating ``local_id``'s remote record: identity only, never content.

    ``replaces`` is the remote id of an earlier remote record of this local record that is
    gone (deleted at the provider or by syncd), so a second life gets a key of its own.
    ``refused_at`` is when the provider last refused this record: that attempt is known to
    have left nothing, so the next create is a new request rather than a replay of the
    refusal (providers that keep refusals under their key would answer it again).
    """
    return idempotency_key(venue_id, provider, entity, local_id, replaces or "",
                           refused_at.isoformat() if refused_at else "", operation="create")


def update_key(venue_id: str, provider: str, entity: str, local_id: str, *,
               remote_id: str | None, remote_version: str | None, base_hash: str | None,
               synced_at: datetime | None, content_hash: str,
               operation: str = "update") -> str:
    """The key of changing a linked remote record from the state the link describes
    (``remote_id``, ``remote_version``, ``base_hash`` stored at ``synced_at``) to
    ``content_hash``."""
    return idempotency_key(venue_id, provider, entity, local_id, remote_id or "",
                           remote_version or "", base_hash or "",
                           synced_at.isoformat() if synced_at else "", content_hash,
                           operation=operation)
