"""Cron ticks in a venue's time zone, with one fixed rule for daylight-saving changes.

A cron expression names wall-clock times in the venue's zone. Each matching wall-clock time
is one tick, turned into an instant like this:

- a wall time that exists once is that instant;
- a wall time that occurs twice (clocks go back) is its first occurrence: the repeated hour
  does not fire again;
- a wall time that does not exist (clocks go forward) fires at the end of the gap, the first
  instant after it, and several of them (``*/15`` inside the gap) fold into that one tick.

So ticks never go backwards, never repeat, and a daily job runs once every local day.
croniter only ever sees naive wall-clock times; the zone rules are applied here.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from functools import cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import CroniterBadDateError, croniter

from daemon.errors import SyncdError

__all__ = [
    "InvalidSchedule",
    "latest_tick",
    "resolve_zone",
    "ticks_between",
    "validate_cron",
    "wall_to_instant",
]


class InvalidSchedule(SyncdError, ValueError):
    """A cron expression or time zone that cannot be used."""


@cache
def resolve_zone(name: str) -> ZoneInfo:
    """The IANA zone ``name``; :class:`InvalidSchedule` if unknown."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise InvalidSchedule(f"unknown time zone {name!r}") from exc


def validate_cron(expr: str) -> str:
    """``expr`` if croniter accepts it (five fields); :class:`InvalidSchedule` otherwise."""
    if not isinstance(expr, str) or len(expr.split()) != 5:
        raise InvalidSchedule(f"cron expression {expr!r} must have five fields")
    if not croniter.is_valid(expr):
        raise InvalidSchedule(f"invalid cron expression {expr!r}")
    return expr


def _exists(wall: datetime, zone: ZoneInfo) -> bool:
    aware = wall.replace(tzinfo=zone)
    back = aware.astimezone(UTC).astimezone(zone).replace(tzinfo=None)
    return back == wall


def wall_to_instant(wall: datetime, zone: ZoneInfo) -> datetime:
    """The UTC instant of naive wall-clock time ``wall`` in ``zone``, by the module's rule."""
    if _exists(wall, zone):
        # fold=0: the first of two occurrences.
        return wall.replace(tzinfo=zone, fold=0).astimezone(UTC)
    # In a gap: the first instant after it. Gaps are at most a few hours; find the
    # transition between the instants the two offsets give.
    early = wall.replace(tzinfo=zone, fold=1).astimezone(UTC)  # offset after the gap
    late = wall.replace(tzinfo=zone, fold=0).astimezone(UTC)  # offset before the gap
    low, high = min(early, late), max(early, late)
    before = low.astimezone(zone).utcoffset()
    # Binary search to the minute the offset changes (transitions fall on whole minutes).
    while high - low > timedelta(minutes=1):
        mid = low + (high - low) / 2
        mid = mid.replace(second=0, microsecond=0)
        if mid <= low:
            mid = low + timedelta(minutes=1)
        if mid.astimezone(zone).utcoffset() == before:
            low = mid
        else:
            high = mid
    return high


def _walls(expr: str, start_wall: datetime) -> Iterator[datetime]:
    it = croniter(expr, start_wall)
    while True:
        yield it.get_next(datetime)


def ticks_between(expr: str, zone_name: str, start: datetime, end: datetime) -> list[datetime]:
    """Ticks ``t`` (UTC) of ``expr`` in ``zone_name`` with ``start < t <= end``."""
    validate_cron(expr)
    zone = resolve_zone(zone_name)
    if start.tzinfo is None or end.tzinfo is None:
        raise ValueError("start and end must be timezone-aware")
    out: list[datetime] = []
    # Start a little early in wall time: the mapping to instants is monotonic, so no tick
    # after ``start`` is missed, and earlier ones are filtered out.
    start_wall = (start.astimezone(zone) - timedelta(hours=3)).replace(tzinfo=None)
    end_wall = (end.astimezone(zone) + timedelta(hours=3)).replace(tzinfo=None)
    walls = _walls(expr, start_wall)
    while True:
        try:
            wall = next(walls)
        except CroniterBadDateError:
            break
        if wall > end_wall:
            break
        instant = wall_to_instant(wall, zone)
        if instant <= start or instant > end:
            continue
        if out and instant <= out[-1]:
            continue
        out.append(instant)
    return out


def latest_tick(expr: str, zone_name: str, now: datetime) -> datetime | None:
    """The most recent tick at or before ``now`` (UTC), or None if there is none in the last
    366 days (a schedule that never fires, like ``0 0 30 2 *``)."""
    validate_cron(expr)
    zone = resolve_zone(zone_name)
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    # Wall time of ``now``, a little ahead so that a gap's folded tick is considered, then
    # walk back until a tick at or before ``now`` is found.
    wall = (now.astimezone(zone) + timedelta(hours=3)).replace(tzinfo=None, second=0,
                                                              microsecond=0)
    it = croniter(expr, wall + timedelta(minutes=1))
    limit = now - timedelta(days=366)
    while True:
        try:
            candidate_wall = it.get_prev(datetime)
        except CroniterBadDateError:
            return None
        instant = wall_to_instant(candidate_wall, zone)
        if instant <= now:
            return instant
        if instant < limit:  # pragma: no cover - cannot happen with a monotonic mapping
            return None
        if candidate_wall < (limit.astimezone(zone).replace(tzinfo=None)):
            return None
