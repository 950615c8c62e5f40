"""Deterministic idempotency keys: one per record version and operation.

The same record content pushed again (a retry after a crash mid-batch) carries the same key,
so the provider replays its first answer instead of creating a duplicate. A changed record
gets a new key. 32 hex characters fit every provider's limit (QuickBooks batch request ids
take 36, Square payments 45).
"""

from __future__ import annotations

import hashlib

__all__ = ["KEY_LENGTH", "idempotency_key"]

KEY_LENGTH = 32


def idempotency_key(venue_id: str, provider: str, entity: str, local_id: str,
                    content_hash: str, *, operation: str = "upsert") -> str:
    """A stable key for this (integration, entity, local id, content, operation)."""
    text = "\x1f".join((str(venue_id), provider, entity, local_id, operation, content_hash))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:KEY_LENGTH]
