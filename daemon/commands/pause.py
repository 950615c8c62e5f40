"""``syncd pause VENUE PROVIDER`` / ``syncd resume VENUE PROVIDER``: hold an integration's
syncs and let them go again (see :mod:`daemon.pause`)."""

from __future__ import annotations

import argparse
import getpass
from typing import Any

from daemon.commands._context import CliContext
from daemon.errors import SyncdError
from daemon.pause import MAX_REASON_LENGTH, PauseState, check_reason, find_integration
from daemon.pause import pause as pause_integration
from daemon.pause import resume as resume_integration
from daemon.sql import queries

__all__ = ["register"]

_Q = queries("pause.sql")


def _reason(text: str) -> str:
    try:
        return check_reason(text) or ""
    except SyncdError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


def register(subparsers: argparse._SubParsersAction[Any]) -> None:
    p = subparsers.add_parser(
        "pause", help="stop an integration's syncs until it is resumed",
        description="Pause VENUE's PROVIDER integration: the scheduler starts none of its "
        "syncs, workers leave its queued jobs waiting, and `syncd sync` refuses it, until "
        "`syncd resume`. A sync already running finishes. Webhooks are still stored. The "
        "pause survives `syncd apply`.")
    p.add_argument("venue", metavar="VENUE", help="venue id (uuid) or venue name")
    p.add_argument("provider", metavar="PROVIDER", help="provider name, e.g. square")
    p.add_argument("--reason", type=_reason, default=None,
                   help=f"why, shown by `syncd status` and the API (at most "
                   f"{MAX_REASON_LENGTH} characters)")
    p.set_defaults(func=run_pause)
    r = subparsers.add_parser(
        "resume", help="let a paused integration sync again",
        description="Resume VENUE's PROVIDER integration: its queued jobs can run at once and "
        "its schedules fire again (a tick missed while paused fires once).")
    r.add_argument("venue", metavar="VENUE", help="venue id (uuid) or venue name")
    r.add_argument("provider", metavar="PROVIDER", help="provider name, e.g. square")
    r.set_defaults(func=run_resume)


def _since(state: PauseState) -> str:
    if state.paused_at is None:
        return ""
    by = f" by {state.paused_by}" if state.paused_by else ""
    return f" since {state.paused_at:%Y-%m-%d %H:%M:%S} UTC{by}"


def _jobs(count: int) -> str:
    return "1 queued job" if count == 1 else f"{count} queued jobs"


async def run_pause(args: argparse.Namespace, ctx: CliContext) -> int:
    async with ctx.database(migrate=True) as db:
        row = await find_integration(db.pool, args.venue, args.provider)
        state = await pause_integration(db.pool, row["venue_id"], row["provider"],
                                        by=_user(), reason=args.reason or None)
        if state is None:
            raise SyncdError(f"no {args.provider} integration for venue {args.venue}")
        waiting = await db.pool.fetchval(_Q["pending_jobs"], state.venue_id, state.provider)
    what = f"{state.provider} for venue {state.venue_label}"
    if not state.changed:
        print(f"{what} was already paused{_since(state)}")
        return 0
    print(f"paused {what}: no new syncs start until `syncd resume`; "
          f"{_jobs(waiting)} {'waits' if waiting == 1 else 'wait'}")
    return 0


async def run_resume(args: argparse.Namespace, ctx: CliContext) -> int:
    async with ctx.database(migrate=True) as db:
        row = await find_integration(db.pool, args.venue, args.provider)
        state = await resume_integration(db.pool, row["venue_id"], row["provider"],
                                         by=_user())
        if state is None:
            raise SyncdError(f"no {args.provider} integration for venue {args.venue}")
        waiting = await db.pool.fetchval(_Q["pending_jobs"], state.venue_id, state.provider)
    what = f"{state.provider} for venue {state.venue_label}"
    if not state.changed:
        print(f"{what} was not paused")
        return 0
    print(f"resumed {what}: {_jobs(waiting)} can run now")
    return 0
