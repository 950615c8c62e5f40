"""Pausing and resuming an integration: an operator's hold on its syncs.

A pause is operational state beside ``enabled`` (which the config owns; ``syncd apply``
neither sets nor lifts a pause). While an integration is paused:

- the scheduler fires none of its schedules (after the resume, a tick missed meanwhile fires
  once, as after any downtime);
- its queued jobs stay pending and no worker claims them (the claim leaves paused
  integrations out, see migrations/0012_pause_and_status_page.sql); they run after the
  resume; a job already running when the pause comes finishes;
- ``syncd sync`` and the admin API's sync now refuse it;
- webhooks are still stored and processed into ``inbound_changes``, and the targeted syncs
  they queue wait with the rest.

``syncd pause`` / ``syncd resume`` and the admin API's ``POST .../pause`` / ``.../resume``
call :func:`pause` and :func:`resume`.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from daemon.errors import SyncdError
from daemon.logs import get_logger
from daemon.sql import queries

__all__ = ["MAX_REASON_LENGTH", "PauseState", "check_reason", "find_integration", "pause",
           "resume"]

log = get_logger("syncd.pause")
_Q = queries("pause.sql")

#: The longest reason a pause keeps (characters).
MAX_REASON_LENGTH = 500


@dataclass(frozen=True, slots=True)
class PauseState:
    """An integration's pause after a call; ``changed`` says whether the call changed it."""

    venue_id: uuid.UUID
    venue_name: str | None
    provider: str
    paused_at: datetime | None
    paused_by: str | None
    reason: str | None
    changed: bool

    @property
    def paused(self) -> bool:
        return self.paused_at is not None

    @property
    def venue_label(self) -> str:
        return self.venue_name or str(self.venue_id)


def check_reason(reason: str | None) -> str | None:
    """``reason`` as stored (stripped, None when empty); :class:`SyncdError` when it is too
    long or holds a character Postgres text cannot hold."""
    if reason is None:
        return None
    text = reason.strip()
    if len(text) > MAX_REASON_LENGTH:
        raise SyncdError(f"the reason is longer than {MAX_REASON_LENGTH} characters")
    if "\x00" in text:
        raise SyncdError("the reason holds a NUL character")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise SyncdError("the reason is not valid Unicode text") from None
    return text or None


async def find_integration(conn: Any, venue: str, provider: str) -> asyncpg.Record:
    """The integration of ``venue`` (an id or a venue name) with ``provider``;
    :class:`SyncdError` naming both when there is none."""
    row: asyncpg.Record | None = None
    if "\x00" not in venue + provider:
        row = await conn.fetchrow(_Q["find"], venue, provider)
    if row is None:
        raise SyncdError(f"no {provider} integration for venue {venue}")
    return row


def _state(row: asyncpg.Record) -> PauseState:
    return PauseState(row["venue_id"], row["venue_name"], row["provider"], row["paused_at"],
                      row["paused_by"], row["pause_reason"], row["changed"])


async def pause(pool: asyncpg.Pool, venue_id: uuid.UUID, provider: str, *, by: str,
                reason: str | None = None) -> PauseState | None:
    """Pause the integration (None: there is none). Pausing a paused one changes nothing."""
    row = await pool.fetchrow(_Q["pause"], venue_id, provider, by, check_reason(reason))
    if row is None:
        return None
    state = _state(row)
    if state.changed:
        log.info("integration.paused", venue_id=str(venue_id), provider=provider, by=by)
    return state


async def resume(pool: asyncpg.Pool, venue_id: uuid.UUID, provider: str, *, by: str
                 ) -> PauseState | None:
    """Resume the integration (None: there is none) and wake idle workers for its jobs."""
    async with pool.acquire() as conn, conn.transaction():
        row = await conn.fetchrow(_Q["resume"], venue_id, provider)
        if row is not None and row["changed"]:
            await conn.execute(_Q["wake_workers"])
    if row is None:
        return None
    state = _state(row)
    if state.changed:
        log.info("integration.resumed", venue_id=str(venue_id), provider=provider, by=by)
    return state
