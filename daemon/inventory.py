"""Inventory kept at a provider: the allocation ledger and the register sales it reveals.

An event's tickets are sold on two channels: online, by the platform, and at a provider's
register (Square Point of Sale), which lowers the provider's inventory count itself. syncd
keeps the count with **relative adjustments only** and never writes an absolute count over
it, so a register sale is never overwritten (docs/inventory.md explains why this is safe).

The ledger, kept as the inventory link's ``remote_version`` (:class:`Allocation`):

- ``allocation`` (N) is what the provider's count was last set to reflect: the platform's
  capacity less its online sales (its remaining tickets plus the register sales it has
  recorded). With P the tickets sold at the register since syncd first set the count
  (plus those the platform held when it did), the provider's count is always ``N - P``:
  each push adjusts it by the change of N only, and register sales lower it by themselves.
- ``as_of`` is the provider's own time of the state syncd left (the ``calculated_at`` of
  the count its last change produced); ``location`` is where the count is kept.

So an observed count Q (a webhook or a pull, newer than ``as_of``) says the register has
sold ``N - Q`` in all. :func:`settle_inventory_change` writes the difference to what the
platform has recorded (:func:`daemon.source.pos.record_pos_sales`): the quantity sold at
the register since the last observation settled. A stale or replayed observation changes
nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

import asyncpg

from daemon.source.pos import pos_sold, record_pos_sales
from daemon.source.settings import SourceSettings
from daemon.sql import queries

__all__ = ["Allocation", "Observation", "Settled", "parse_time", "settle_inventory_change"]

_Q = queries("inventory.sql")
#: A time before any observation (a count that never changed has no newer state).
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def parse_time(value: Any) -> datetime | None:
    """An RFC 3339 time (``Z`` or an offset) as an aware datetime, or None."""
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class Allocation:
    """The state of one provider count as syncd left it (see the module docstring)."""

    allocation: int
    as_of: datetime
    location: str

    def encode(self) -> str:
        """As stored in the link's ``remote_version``: ``N@as_of@location``."""
        stamp = self.as_of.astimezone(UTC).isoformat(timespec="microseconds")
        return f"{self.allocation}@{stamp}@{self.location}"

    @classmethod
    def parse(cls, text: str | None) -> Allocation | None:
        """The allocation a link holds, or None (no count set yet, or not one of ours)."""
        if not text:
            return None
        parts = text.split("@")
        if len(parts) != 3:
            return None
        try:
            allocation = int(parts[0])
        except ValueError:
            return None
        as_of = parse_time(parts[1])
        if as_of is None or not parts[2]:
            return None
        return cls(allocation, as_of, parts[2])


@dataclass(frozen=True, slots=True)
class Observation:
    """A provider's count at a moment: the payload contract of an ``inventory`` change.

    A plugin's webhook parser and puller put ``observed_quantity`` (the count, a whole
    number), ``observed_at`` (the provider's time of it, RFC 3339) and ``location_id``
    in the change's payload, beside the provider's own fields.
    """

    quantity: int
    observed_at: datetime
    location: str | None

    @classmethod
    def of(cls, payload: Mapping[str, Any]) -> Observation | str:
        """The observation in ``payload``, or why there is none."""
        raw = payload.get("observed_quantity")
        if isinstance(raw, bool) or not isinstance(raw, int):
            return "the change carries no whole-number count (observed_quantity)"
        when = parse_time(payload.get("observed_at"))
        if when is None:
            return "the change carries no time of the count (observed_at)"
        location = payload.get("location_id")
        return cls(raw, when, location if isinstance(location, str) else None)


@dataclass(frozen=True, slots=True)
class Settled:
    """What settling one inventory change did.

    ``status`` is ``applied`` (the platform now holds the register sales the count
    implies; ``sold`` of them were new: negative for tickets returned at the register) or
    ``ignored`` with the ``reason``.
    """

    status: Literal["applied", "ignored"]
    reason: str = ""
    sold: int = 0
    pos_total: int | None = None
    #: Why it was ignored, as a code: ``unlinked`` (no event's count is kept on that
    #: remote record, or none set by syncd yet), ``unmapped`` (no count in the payload, or
    #: a count at another location), ``stale`` (no newer than what is known).
    code: str = ""


async def settle_inventory_change(
    syncd: asyncpg.Connection, platform: asyncpg.Connection, *, venue_id: str, provider: str,
    local_id: str | None, remote_id: str, payload: Mapping[str, Any], key: str,
    settings: SourceSettings,
) -> Settled:
    """Settle one ``inventory`` inbound change: the register sales an observed count reveals
    reach the platform, exactly once.

    ``syncd`` is a connection to syncd's database, ``platform`` to the platform's (the same
    connection when they are one database: then everything is one transaction). ``key`` is
    the change's dedupe key: it names the platform row written, so settling the same change
    twice, or after a crash between the two databases' commits, counts nothing twice.

    The event is the one whose inventory link holds ``remote_id`` now (``local_id``, when
    given, must be it). Ignored (with the reason): a remote record no link holds, a link
    with no count set by syncd yet, a count at another location, a count no newer than the
    last settled one or than syncd's own last change (a late delivery: a newer state is
    already known), a payload without a count. Raises
    :class:`daemon.source.pos.UnknownEvent` when the platform has no such event for the
    venue (nothing is written).

    Run it where no push of the same integration runs at the same time (the integration's
    sync job, which holds its lease): a count observed between a push reaching the
    provider and its link being written would be read against the allocation before it.
    """
    observation = Observation.of(payload)
    if isinstance(observation, str):
        return Settled("ignored", observation, code="unmapped")
    async with syncd.transaction():
        await syncd.execute(_Q["lock_observation"], f"{venue_id}|{provider}|{remote_id}")
        link = await syncd.fetchrow(_Q["inventory_link"], venue_id, provider, remote_id)
        if link is None:
            return Settled("ignored", f"{provider} record {remote_id} keeps no event's count",
                           code="unlinked")
        if local_id is not None and link["local_id"] != local_id:
            return Settled("ignored", f"{provider} record {remote_id} keeps the count of "
                                      f"event {link['local_id']}, not {local_id}",
                           code="unlinked")
        local_id = str(link["local_id"])
        state = Allocation.parse(link["remote_version"])
        if state is None:
            return Settled("ignored", f"syncd has not set the count of event {local_id} yet",
                           code="unlinked")
        if observation.location is not None and observation.location != state.location:
            return Settled("ignored", f"a count at location {observation.location}, not at "
                                      f"{state.location} where the event's count is kept",
                           code="unmapped")
        if observation.observed_at < state.as_of:
            return Settled("ignored", "older than syncd's last change of the count", code="stale")
        last = await syncd.fetchrow(_Q["last_observation"], venue_id, provider, local_id)
        if last is not None and observation.observed_at <= last["observed_at"]:
            return Settled("ignored", "not newer than the count already settled", code="stale")
        total = state.allocation - observation.quantity
        recorded = await pos_sold(platform, venue_id, local_id, settings=settings)
        sold = total - recorded
        if sold:
            await record_pos_sales(platform, venue_id, local_id, sold, provider=provider,
                                   key=key, observed_at=observation.observed_at,
                                   settings=settings)
        await syncd.execute(_Q["save_observation"], venue_id, provider, local_id, remote_id,
                            observation.quantity, observation.observed_at, total)
    return Settled("applied", sold=sold, pos_total=total)
