"""Reading and settling inbound changes for operators (``syncd inbound``, the admin API)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import asyncpg

from daemon.sql import queries

__all__ = ["STATUSES", "as_json", "get_change", "ignore_change", "list_changes"]

_Q = queries("inbound.sql")
#: What an inbound change's status can be.
STATUSES = ("pending", "applied", "ignored", "failed", "dead_letter")


def as_json(row: asyncpg.Record | dict[str, Any]) -> dict[str, Any]:
    """A change as JSON-friendly values (times in ISO 8601, ids as text)."""
    out: dict[str, Any] = {}
    for key, value in dict(row).items():
        if isinstance(value, datetime):
            out[key] = value.isoformat()
        elif isinstance(value, uuid.UUID):
            out[key] = str(value)
        else:
            out[key] = value
    return out


async def list_changes(conn: asyncpg.Connection, *, status: str | None = None,
                       venue_id: uuid.UUID | None = None, provider: str | None = None,
                       before: int | None = None, limit: int = 50) -> list[asyncpg.Record]:
    """Changes, newest first (``before``: only ids below it, for paging)."""
    rows: list[asyncpg.Record] = await conn.fetch(_Q["list"], status, venue_id, provider,
                                                  before, limit)
    return rows


async def get_change(conn: asyncpg.Connection, change_id: int) -> asyncpg.Record | None:
    row: asyncpg.Record | None = await conn.fetchrow(_Q["show"], change_id)
    return row


async def ignore_change(conn: asyncpg.Connection, change_id: int, reason: str,
                        operator: str) -> bool:
    """Settle a change as ignored by an operator; False when it is applied or unknown."""
    return await conn.fetchval(_Q["operator_ignore"], change_id, reason, operator) is not None
