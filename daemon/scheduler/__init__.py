"""Cron scheduling: tick generation in venue time zones and the leader-only scheduler."""

from daemon.scheduler.scheduler import LEADER_KEY, FiredTick, Scheduler, jitter_for
from daemon.scheduler.ticks import InvalidSchedule, latest_tick, ticks_between, wall_to_instant

__all__ = [
    "LEADER_KEY",
    "FiredTick",
    "InvalidSchedule",
    "Scheduler",
    "jitter_for",
    "latest_tick",
    "ticks_between",
    "wall_to_instant",
]
