"""``syncd dlq``: list, show, replay and purge dead-lettered jobs."""

from __future__ import annotations

import argparse
import dataclasses
import json
from datetime import datetime
from typing import Any

from daemon.commands._argtypes import DAYS, JOB_ID, whole_number
from daemon.commands._context import CliContext
from daemon.commands.queue import parse_uuid, queue_connection
from daemon.errors import SyncdError


def register(subparsers: argparse._SubParsersAction[Any]) -> None:
    p = subparsers.add_parser(
        "dlq",
        help="list, show, replay or purge dead-lettered jobs",
        description="Jobs that used up their attempts wait here until replayed or purged.",
    )
    sub = p.add_subparsers(dest="dlq_command", metavar="SUBCOMMAND", required=True)

    ls = sub.add_parser("list", help="list dead letters, newest first")
    _filters(ls)
    ls.add_argument("--limit", type=whole_number(1, 10_000), default=50,
                    help="most jobs listed (1 to 10000, default 50)")
    ls.add_argument("--json", action="store_true", help="print JSON")
    ls.set_defaults(func=list_cmd)

    sh = sub.add_parser("show", help="show one job in full")
    sh.add_argument("id", type=JOB_ID)
    sh.add_argument("--json", action="store_true", help="print JSON")
    sh.set_defaults(func=show_cmd)

    rp = sub.add_parser("replay", help="put dead letters back on the queue",
                        description="Back to pending with a fresh attempt budget. Give ids, "
                        "or --all (narrowed by --venue/--provider).")
    rp.add_argument("ids", type=JOB_ID, nargs="*")
    rp.add_argument("--all", action="store_true")
    _filters(rp)
    rp.set_defaults(func=replay_cmd)

    pg = sub.add_parser("purge", help="delete dead letters",
                        description="Delete dead letters for good. Give ids, or --all "
                        "(narrowed by --venue/--provider/--older-than-days).")
    pg.add_argument("ids", type=JOB_ID, nargs="*")
    pg.add_argument("--all", action="store_true")
    pg.add_argument("--older-than-days", type=DAYS, default=None, metavar="DAYS",
                    help="only dead letters that finished longer ago than this")
    _filters(pg)
    pg.set_defaults(func=purge_cmd)


def _filters(p: argparse.ArgumentParser) -> None:
    p.add_argument("--venue", default=None, help="only this venue (UUID)")
    p.add_argument("--provider", default=None, help="only this provider")


def _selection(args: argparse.Namespace) -> list[int] | None:
    if args.ids and args.all:
        raise SyncdError("give job ids or --all, not both")
    if not args.ids and not args.all:
        raise SyncdError("give the job ids, or --all")
    return list(args.ids) or None


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, dict | list | int | float | str | bool) or value is None:
        return value
    return str(value)


async def list_cmd(args: argparse.Namespace, ctx: CliContext) -> int:
    from daemon.queue.admin import dlq_list

    venue = parse_uuid(args.venue, "--venue") if args.venue else None
    async with queue_connection(ctx) as conn:
        jobs = await dlq_list(conn, venue_id=venue, provider=args.provider, limit=args.limit)
    if args.json:
        print(json.dumps([{k: _jsonable(v) for k, v in dataclasses.asdict(j).items()}
                          for j in jobs], indent=2))
        return 0
    if not jobs:
        print("the dead-letter queue is empty")
        return 0
    for j in jobs:
        when = j.completed_at.strftime("%Y-%m-%d %H:%M") if j.completed_at else "-"
        error = (j.last_error or "").splitlines()[0][:80] if j.last_error else ""
        print(f"#{j.id}  {when}  {j.venue_id} {j.provider}/{j.entity_type} {j.operation} "
              f"{j.lane}  attempts={j.attempts}/{j.max_attempts}  {j.error_kind or '-'}: "
              f"{error}")
    return 0


async def show_cmd(args: argparse.Namespace, ctx: CliContext) -> int:
    from daemon.queue.admin import get_job

    async with queue_connection(ctx) as conn:
        job = await get_job(conn, args.id)
    if job is None:
        raise SyncdError(f"no job {args.id}")
    job = {k: _jsonable(v) for k, v in job.items()}
    if args.json:
        print(json.dumps(job, indent=2))
    else:
        width = max(len(k) for k in job)
        for k, v in job.items():
            text = json.dumps(v) if isinstance(v, dict | list) else ("-" if v is None else v)
            print(f"{k:<{width}}  {text}")
    return 0


async def replay_cmd(args: argparse.Namespace, ctx: CliContext) -> int:
    from daemon.queue.admin import dlq_replay

    ids = _selection(args)
    venue = parse_uuid(args.venue, "--venue") if args.venue else None
    async with queue_connection(ctx) as conn:
        replayed = await dlq_replay(conn, ids=ids, venue_id=venue, provider=args.provider,
                                    ttl_seconds=ctx.settings.queue_job_ttl_seconds)
    missing = sorted(set(ids or ()) - set(replayed))
    print(f"replayed {len(replayed)} job{'s' if len(replayed) != 1 else ''}"
          + (f": {', '.join(map(str, replayed))}" if replayed else ""))
    if missing:
        print(f"not dead letters: {', '.join(map(str, missing))}")
        return 1
    return 0


async def purge_cmd(args: argparse.Namespace, ctx: CliContext) -> int:
    from daemon.queue.admin import dlq_purge

    ids = _selection(args)
    venue = parse_uuid(args.venue, "--venue") if args.venue else None
    older = args.older_than_days * 86400.0 if args.older_than_days is not None else None
    async with queue_connection(ctx) as conn:
        purged = await dlq_purge(conn, ids=ids, venue_id=venue, provider=args.provider,
                                 older_than_s=older)
    missing = sorted(set(ids or ()) - set(purged))
    print(f"purged {len(purged)} job{'s' if len(purged) != 1 else ''}")
    if missing:
        print(f"not dead letters: {', '.join(map(str, missing))}")
        return 1
    return 0
