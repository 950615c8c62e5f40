"""Tickets sold at a provider's register, written to the platform (the default schema).

This is the one write syncd makes for inventory: a row in the platform's ``pos_sales`` table
(renamable like every source table, see :class:`~daemon.source.settings.SourceSettings`).
The inventory source query subtracts the rows of an event from its remaining tickets, and a
platform that sells online must subtract them too (docs/platform-schema.md).

The contract a sink relies on: :func:`record_pos_sales` takes the venue, the event's local
id and a quantity (positive: tickets sold at the register; negative: tickets returned there),
and a ``key`` naming the observation it comes from. It runs in one transaction; a key
already recorded is not counted again, so a replayed or twice-delivered observation changes
nothing.
"""

from __future__ import annotations

from datetime import datetime

import asyncpg

from daemon.errors import SyncdError
from daemon.source.reader import _source_queries
from daemon.source.settings import SourceSettings, render_query

__all__ = ["UnknownEvent", "pos_sold", "record_pos_sales"]


class UnknownEvent(SyncdError, LookupError):
    """The venue has no event with this id on the platform."""


def _sql(settings: SourceSettings) -> dict[str, str]:
    raw = _source_queries()  # parsed once per process; rendering is a few substitutions
    return {name: render_query(raw[name], settings)
            for name in ("pos_sold", "lock_event", "insert_pos_sale")}


async def pos_sold(conn: asyncpg.Connection, venue_id: str, event_id: str, *,
                   settings: SourceSettings) -> int:
    """Tickets of the event sold at registers, as the platform has them recorded."""
    value = await conn.fetchval(_sql(settings)["pos_sold"], venue_id, event_id)
    return int(value or 0)


async def record_pos_sales(conn: asyncpg.Connection, venue_id: str, event_id: str,
                           quantity: int, *, provider: str, key: str,
                           observed_at: datetime | None = None,
                           settings: SourceSettings) -> bool:
    """Record ``quantity`` tickets of the event sold (or, negative, returned) at
    ``provider``'s register, in one transaction. True when written; False when ``key`` was
    already recorded (nothing is counted twice). :class:`UnknownEvent` when the venue has
    no such event (nothing is written)."""
    if isinstance(quantity, bool) or not isinstance(quantity, int):
        raise TypeError(f"a quantity of tickets is an integer, got {quantity!r}")
    if quantity == 0:
        return False
    sql = _sql(settings)
    async with conn.transaction():
        try:
            found = await conn.fetchval(sql["lock_event"], venue_id, event_id)
        except (asyncpg.DataError, asyncpg.InvalidTextRepresentationError):
            found = None
        if found is None:
            raise UnknownEvent(f"venue {venue_id} has no event {event_id} on the platform")
        written = await conn.fetchval(sql["insert_pos_sale"], venue_id, found, provider,
                                      quantity, key, observed_at)
    return written is not None
