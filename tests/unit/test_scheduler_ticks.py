"""Cron tick generation in venue time zones, across daylight-saving changes."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from croniter import croniter
from hypothesis import given, settings
from hypothesis import strategies as st

from daemon.scheduler.ticks import (
    InvalidSchedule,
    latest_tick,
    ticks_between,
    validate_cron,
    wall_to_instant,
)

ZONES = [
    "Europe/London",
    "America/New_York",
    "Australia/Sydney",
    "Asia/Kolkata",
    "Australia/Lord_Howe",  # half-hour daylight saving
    "America/Santiago",
    "UTC",
]

crons = st.one_of(
    st.builds(lambda m, h: f"{m} {h} * * *", st.integers(0, 59), st.integers(0, 23)),
    st.builds(lambda m: f"{m} * * * *", st.integers(0, 59)),
    st.builds(lambda k: f"*/{k} * * * *", st.sampled_from([5, 15, 20, 30])),
    st.builds(lambda m, h: f"{m} {h}-{h + 2} * * *", st.sampled_from([0, 30, 45]),
              st.integers(0, 21)),
    st.builds(lambda h, d: f"0 {h} * * {d}", st.integers(0, 23), st.integers(0, 6)),
)
# Windows around the daylight-saving changes of the zones above, and elsewhere.
starts = st.datetimes(
    min_value=datetime(2021, 1, 1), max_value=datetime(2027, 12, 31)
).map(lambda d: d.replace(tzinfo=UTC))
near_change = st.tuples(
    st.sampled_from([
        datetime(2024, 3, 10, 6, tzinfo=UTC),  # New York springs forward
        datetime(2024, 11, 3, 5, tzinfo=UTC),  # New York falls back
        datetime(2024, 3, 31, 0, 30, tzinfo=UTC),  # London springs forward
        datetime(2024, 10, 27, 0, 30, tzinfo=UTC),  # London falls back
        datetime(2024, 4, 6, 15, tzinfo=UTC),  # Sydney falls back
        datetime(2024, 10, 5, 15, tzinfo=UTC),  # Sydney springs forward
        datetime(2024, 4, 6, 14, 30, tzinfo=UTC),  # Lord Howe falls back half an hour
        datetime(2024, 9, 7, 3, tzinfo=UTC),  # Santiago springs forward (at midnight)
    ]),
    st.integers(-36 * 60, 36 * 60),
).map(lambda t: t[0] + timedelta(minutes=t[1]))
window_starts = st.one_of(starts, near_change)


def _wall(instant: datetime, zone: ZoneInfo) -> datetime:
    return instant.astimezone(zone).replace(tzinfo=None)


def _exists_once(wall: datetime, zone: ZoneInfo) -> bool:
    a = wall.replace(tzinfo=zone, fold=0)
    b = wall.replace(tzinfo=zone, fold=1)
    return a.utcoffset() == b.utcoffset() and _wall(a.astimezone(UTC), zone) == wall


@settings(max_examples=300, deadline=None)
@given(expr=crons, zone_name=st.sampled_from(ZONES), start=window_starts,
       hours=st.integers(1, 72))
def test_ticks_are_ordered_unique_and_match_the_cron(
    expr: str, zone_name: str, start: datetime, hours: int
) -> None:
    zone = ZoneInfo(zone_name)
    end = start + timedelta(hours=hours)
    ticks = ticks_between(expr, zone_name, start, end)
    assert all(start < t <= end for t in ticks)
    assert all(a < b for a, b in itertools.pairwise(ticks))
    assert all(t.tzinfo is not None and t.second == 0 for t in ticks)
    walls = [_wall(t, zone) for t in ticks]
    assert len(set(walls)) == len(walls)
    for t, wall in zip(ticks, walls, strict=True):
        if croniter.match(expr, wall):
            continue
        # Otherwise the tick is the end of a gap, standing for cron times inside it.
        before = (t - timedelta(minutes=1)).astimezone(zone).utcoffset()
        assert before != t.astimezone(zone).utcoffset(), (expr, zone_name, t)


@settings(max_examples=300, deadline=None)
@given(expr=crons, zone_name=st.sampled_from(ZONES), start=window_starts,
       hours=st.integers(1, 72))
def test_every_wall_time_that_occurs_once_fires(
    expr: str, zone_name: str, start: datetime, hours: int
) -> None:
    zone = ZoneInfo(zone_name)
    end = start + timedelta(hours=hours)
    ticks = set(ticks_between(expr, zone_name, start, end))
    it = croniter(expr, _wall(start, zone) - timedelta(hours=4))
    while (wall := it.get_next(datetime)) <= _wall(end, zone) + timedelta(hours=4):
        if not _exists_once(wall, zone):
            continue
        instant = wall.replace(tzinfo=zone).astimezone(UTC)
        if start < instant <= end:
            assert instant in ticks, (expr, zone_name, wall)


@settings(max_examples=200, deadline=None)
@given(minute=st.integers(0, 59), hour=st.integers(0, 23),
       zone_name=st.sampled_from(ZONES), start=window_starts)
def test_a_daily_job_runs_once_every_local_day(
    minute: int, hour: int, zone_name: str, start: datetime
) -> None:
    zone = ZoneInfo(zone_name)
    ticks = ticks_between(f"{minute} {hour} * * *", zone_name, start, start + timedelta(days=6))
    days = [t.astimezone(zone).date() for t in ticks]
    assert len(days) == len(set(days))
    first_full = (start.astimezone(zone) + timedelta(days=1)).date()
    for n in range(4):
        assert first_full + timedelta(days=n) in days


@settings(max_examples=300, deadline=None)
@given(expr=crons, zone_name=st.sampled_from(ZONES), now=window_starts)
def test_latest_tick_is_the_last_of_the_recent_ticks(
    expr: str, zone_name: str, now: datetime
) -> None:
    recent = ticks_between(expr, zone_name, now - timedelta(days=8), now)
    assert latest_tick(expr, zone_name, now) == (recent[-1] if recent else None)


@pytest.mark.parametrize(
    ("zone", "wall", "expected"),
    [
        # Clocks go forward at 02:00 in New York: 02:30 does not exist; it fires at 03:00 EDT.
        ("America/New_York", datetime(2024, 3, 10, 2, 30), datetime(2024, 3, 10, 7, 0)),
        # Clocks go back at 02:00 in New York: 01:30 happens twice; the first counts.
        ("America/New_York", datetime(2024, 11, 3, 1, 30), datetime(2024, 11, 3, 5, 30)),
        ("Europe/London", datetime(2024, 3, 31, 1, 15), datetime(2024, 3, 31, 1, 0)),
        ("Europe/London", datetime(2024, 10, 27, 1, 15), datetime(2024, 10, 27, 0, 15)),
        ("Australia/Sydney", datetime(2024, 10, 6, 2, 30), datetime(2024, 10, 5, 16, 0)),
        ("Australia/Sydney", datetime(2024, 4, 7, 2, 30), datetime(2024, 4, 6, 15, 30)),
        ("Asia/Kolkata", datetime(2024, 3, 10, 2, 30), datetime(2024, 3, 9, 21, 0)),
    ],
)
def test_wall_times_around_changes(zone: str, wall: datetime, expected: datetime) -> None:
    assert wall_to_instant(wall, ZoneInfo(zone)) == expected.replace(tzinfo=UTC)


def test_spring_forward_folds_a_gap_into_one_tick() -> None:
    ticks = ticks_between("*/15 * * * *", "America/New_York",
                          datetime(2024, 3, 10, 6, 40, tzinfo=UTC),
                          datetime(2024, 3, 10, 7, 20, tzinfo=UTC))
    # 01:45 EST, then 02:00-02:45 (missing) fold into 03:00 EDT, then 03:15 EDT.
    assert ticks == [datetime(2024, 3, 10, 6, 45, tzinfo=UTC),
                     datetime(2024, 3, 10, 7, 0, tzinfo=UTC),
                     datetime(2024, 3, 10, 7, 15, tzinfo=UTC)]


def test_fall_back_does_not_repeat_the_hour() -> None:
    ticks = ticks_between("0 * * * *", "America/New_York",
                          datetime(2024, 11, 3, 4, 30, tzinfo=UTC),
                          datetime(2024, 11, 3, 7, 30, tzinfo=UTC))
    # 01:00 EDT, then 01:00 EST is the same wall time again: skipped; then 02:00 EST.
    assert ticks == [datetime(2024, 11, 3, 5, 0, tzinfo=UTC),
                     datetime(2024, 11, 3, 7, 0, tzinfo=UTC)]


def test_a_schedule_that_never_fires_has_no_tick() -> None:
    now = datetime(2024, 3, 1, tzinfo=UTC)
    assert latest_tick("0 0 30 2 *", "UTC", now) is None
    assert ticks_between("0 0 30 2 *", "UTC", now, now + timedelta(days=400)) == []


@pytest.mark.parametrize("expr", ["", "* * *", "61 * * * *", "a b c d e", "* * * * * *"])
def test_invalid_cron_is_refused(expr: str) -> None:
    with pytest.raises(InvalidSchedule):
        validate_cron(expr)


def test_unknown_zone_is_refused() -> None:
    with pytest.raises(InvalidSchedule, match="Mars/Olympus"):
        latest_tick("* * * * *", "Mars/Olympus", datetime.now(UTC))


@pytest.mark.parametrize("zone_name", ["UTC", "Europe/London", "Australia/Sydney"])
def test_a_tick_exactly_at_now_is_the_latest(zone_name: str) -> None:
    zone = ZoneInfo(zone_name)
    now = datetime(2026, 3, 7, 19, 0, tzinfo=zone).astimezone(UTC)
    assert latest_tick("0 * * * *", zone_name, now) == now
    assert latest_tick("0 * * * *", zone_name, now - timedelta(microseconds=1)) \
        == now - timedelta(hours=1)
    # ... and ticks_between counts its end, not its start.
    assert ticks_between("0 * * * *", zone_name, now - timedelta(hours=1), now) == [now]
