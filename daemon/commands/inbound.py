"""``syncd inbound``: list, show, apply and ignore provider changes bound for the platform."""

from __future__ import annotations

import argparse
import getpass
import json
from typing import Any

from pydantic import ValidationError

from daemon.commands._argtypes import JOB_ID, whole_number
from daemon.commands._context import CliContext
from daemon.commands.queue import parse_uuid
from daemon.errors import SyncdError

STATUSES = ("pending", "applied", "ignored", "failed", "dead_letter")


def register(subparsers: argparse._SubParsersAction[Any]) -> None:
    p = subparsers.add_parser(
        "inbound",
        help="list, show, apply or ignore provider changes bound for the platform",
        description="Changes providers reported (webhooks and pulls), each with its outcome: "
        "applied, ignored (with the reason), failed (tried again) or dead_letter.")
    sub = p.add_subparsers(dest="inbound_command", metavar="SUBCOMMAND", required=True)

    ls = sub.add_parser("list", help="list changes, newest first")
    ls.add_argument("--status", choices=STATUSES, default=None, help="only this status")
    ls.add_argument("--venue", default=None, help="only this venue (UUID)")
    ls.add_argument("--provider", default=None, help="only this provider")
    ls.add_argument("--before", type=JOB_ID, default=None, metavar="ID",
                    help="only changes with a smaller id (the next page)")
    ls.add_argument("--limit", type=whole_number(1, 10_000), default=50,
                    help="most changes listed (1 to 10000, default 50)")
    ls.add_argument("--json", action="store_true", help="print JSON")
    ls.set_defaults(func=list_cmd)

    sh = sub.add_parser("show", help="show one change in full: values, decision per field")
    sh.add_argument("id", type=JOB_ID)
    sh.add_argument("--json", action="store_true", help="print JSON")
    sh.set_defaults(func=show_cmd)

    ap = sub.add_parser("apply", help="process one change again now",
                        description="Decide the change again now, whatever its status but "
                        "applied (a dead letter after fixing the mapping, say). --force "
                        "writes the provider's values whatever the fields' policies say; the "
                        "allow-list and the value checks still hold.")
    ap.add_argument("id", type=JOB_ID)
    ap.add_argument("--force", action="store_true",
                    help="the provider's values win over the platform's")
    ap.set_defaults(func=apply_cmd)

    ig = sub.add_parser("ignore", help="settle a change as ignored, with a reason")
    ig.add_argument("id", type=JOB_ID)
    ig.add_argument("--reason", default="ignored by an operator",
                    help="why (kept with the change)")
    ig.set_defaults(func=ignore_cmd)


def _operator() -> str:
    try:
        return f"operator:{getpass.getuser()}"
    except (KeyError, OSError):
        return "operator"


def _cell(value: Any) -> str:
    return "-" if value is None else str(value)


async def list_cmd(args: argparse.Namespace, ctx: CliContext) -> int:
    from daemon.inbound.admin import as_json, list_changes

    venue = parse_uuid(args.venue, "--venue") if args.venue else None
    async with ctx.database() as db, db.pool.acquire() as conn:
        rows = await list_changes(conn, status=args.status, venue_id=venue,
                                  provider=args.provider, before=args.before,
                                  limit=args.limit)
    if args.json:
        print(json.dumps([as_json(r) for r in rows], indent=2))
        return 0
    if not rows:
        print("no inbound changes")
        return 0
    for r in rows:
        when = r["received_at"].strftime("%Y-%m-%d %H:%M:%S")
        reason = (r["reason"] or "").splitlines()[0][:80] if r["reason"] else ""
        status = r["status"] + (f"/{r['reason_code']}" if r["reason_code"] else "")
        print(f"#{r['id']}  {when}  {r['venue_id']} {r['provider']}/{r['entity_type']} "
              f"{r['remote_id']} -> {_cell(r['local_id'])}  {r['change']} ({r['source']})  "
              f"{status}  {reason}".rstrip())
    return 0


async def show_cmd(args: argparse.Namespace, ctx: CliContext) -> int:
    from daemon.inbound.admin import as_json, get_change

    async with ctx.database() as db, db.pool.acquire() as conn:
        row = await get_change(conn, args.id)
    if row is None:
        raise SyncdError(f"no inbound change {args.id}")
    change = as_json(row)
    if args.json:
        print(json.dumps(change, indent=2, default=str))
        return 0
    width = max(len(k) for k in change)
    for key, value in change.items():
        text = json.dumps(value, default=str) if isinstance(value, dict | list) else _cell(value)
        print(f"{key:<{width}}  {text}")
    return 0


async def apply_cmd(args: argparse.Namespace, ctx: CliContext) -> int:
    from daemon.inbound.build import inbound_processor
    from daemon.inbound.fields import load_inbound_settings
    from daemon.source import SourceReader, SourceSettings

    inbound_settings = load_inbound_settings()
    try:
        source_settings = SourceSettings()
    except ValidationError as exc:
        raise SyncdError(f"invalid settings: {exc.errors()[0]['msg']}") from None
    plugins = ctx.plugins
    async with ctx.database() as db:
        source_pool = db.pool
        own_pool = None
        if source_settings.database_url is not None:
            from daemon.db import open_pool

            own_pool = source_pool = await open_pool(
                source_settings.database_url.get_secret_value())
        try:
            processor = inbound_processor(
                db.pool, plugins.providers, source=SourceReader(source_pool, source_settings),
                hook=plugins.hook, settings=inbound_settings)
            try:
                decision = await processor.process_one(args.id, force=args.force,
                                                       operator=_operator())
            except LookupError as exc:
                raise SyncdError(str(exc)) from None
        finally:
            if own_pool is not None:
                await own_pool.close()
    status = decision.status + (f"/{decision.code}" if decision.code else "")
    print(f"inbound change {args.id}: {status}" + (f": {decision.reason}"
                                                   if decision.reason else ""))
    return 0 if decision.status in ("applied", "ignored") else 1


async def ignore_cmd(args: argparse.Namespace, ctx: CliContext) -> int:
    from daemon.inbound.admin import get_change, ignore_change

    reason = " ".join(str(args.reason).replace("\x00", "").split())[:500] or \
        "ignored by an operator"
    async with ctx.database() as db, db.pool.acquire() as conn:
        if not await ignore_change(conn, args.id, reason, _operator()):
            row = await get_change(conn, args.id)
            if row is None:
                raise SyncdError(f"no inbound change {args.id}")
            raise SyncdError(f"inbound change {args.id} is applied already")
    print(f"inbound change {args.id}: ignored ({reason})")
    return 0
