"""``syncd migrate``: apply pending schema migrations, or show their status."""

from __future__ import annotations

import argparse
import json
from typing import Any

from daemon.commands._context import CliContext
from daemon.migrate import apply_migrations, migration_status


def register(subparsers: argparse._SubParsersAction[Any]) -> None:
    p = subparsers.add_parser(
        "migrate",
        help="apply pending database migrations",
        description="Apply pending migrations, each in its own transaction, under an "
        "advisory lock (safe when several replicas start together).",
    )
    p.add_argument("--status", action="store_true", help="list migrations and their state")
    p.add_argument("--json", action="store_true", help="with --status: print JSON")
    p.set_defaults(func=run)


async def run(args: argparse.Namespace, ctx: CliContext) -> int:
    async with ctx.database() as db, db.pool.acquire() as conn:
        if args.status:
            rows = await migration_status(conn)
            if args.json:
                print(json.dumps([
                    {"version": r.version, "name": r.name, "state": r.state,
                     "applied_at": r.applied_at.isoformat() if r.applied_at else None}
                    for r in rows
                ], indent=2))
            else:
                for r in rows:
                    when = r.applied_at.strftime("%Y-%m-%d %H:%M:%S UTC") if r.applied_at else ""
                    print(f"{r.version:04d}  {r.name:<32} {r.state:<8} {when}")
            return 1 if any(r.state in ("changed", "missing") for r in rows) else 0
        applied = await apply_migrations(conn)
        if applied:
            for m in applied:
                print(f"applied {m.filename}")
        else:
            print("database is up to date")
        return 0
