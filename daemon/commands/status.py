"""``syncd status [VENUE]``: integrations with their status, health, last sync, queue depth,
and where their credentials come from (a stored OAuth grant, a stored API key, references)."""

from __future__ import annotations

import argparse
import json
import uuid
from datetime import datetime
from typing import Any

from daemon.commands._context import CliContext
from daemon.errors import SyncdError
from daemon.sql import queries

__all__ = ["register"]

_Q = queries("sync.sql")
_V = queries("vault.sql")


def credential_source(row: Any) -> str:
    """Where an integration's credentials come from, said plainly (never a value)."""
    if row is None:
        return "-"
    if row["has_token"]:
        if row["refresh_failed_count"]:
            return "oauth grant (refresh failing)"
        return "oauth grant"
    if row["has_key"]:
        return "stored api key" if row["key_valid"] else "stored api key (refused)"
    refs = row["credentials"] or {}
    if "oauth" in refs.values():
        return "oauth: not connected"
    if any(isinstance(v, str) and v.startswith(("env:", "file:")) for v in refs.values()):
        return "references"
    return "none"


def register(subparsers: argparse._SubParsersAction[Any]) -> None:
    p = subparsers.add_parser(
        "status",
        help="show integrations: status, health, last sync, queue depth",
        description="One line per integration (of VENUE when given): whether it is enabled "
        "(and paused, since when), "
        "its connection status, health, when it last synced and how that run ended, and how "
        "many jobs wait in the queue.",
    )
    p.add_argument("venue", metavar="VENUE", nargs="?",
                   help="venue id (uuid) or venue name; default: every venue")
    p.add_argument("--json", action="store_true", help="print JSON lines")
    p.set_defaults(func=run)


def _when(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S") if value is not None else "never"


async def run(args: argparse.Namespace, ctx: CliContext) -> int:
    async with ctx.database() as db, db.pool.acquire() as conn:
        venue_id: str | None = None
        if args.venue:
            try:
                venue_id = str(uuid.UUID(args.venue))
            except ValueError:
                venue_id = await conn.fetchval(
                    "SELECT venue_id::text FROM integration_configs WHERE venue_name = $1 "
                    "LIMIT 1", args.venue)
                if venue_id is None:
                    raise SyncdError(f"no integrations for venue {args.venue!r}") from None
        rows = await conn.fetch(_Q["status_rows"], venue_id)
        sources = {(r["venue_id"], r["provider"]): r
                   for r in await conn.fetch(_V["credential_sources"], venue_id)}
    if args.json:
        for r in rows:
            source = credential_source(sources.get((r["venue_id"], r["provider"])))
            print(json.dumps({**dict(r), "credentials": source}, default=str))
        return 0
    if not rows:
        print("no integrations" + (f" for venue {args.venue}" if args.venue else ""))
        return 0
    header = ("venue", "provider", "enabled", "status", "credentials", "health", "last sync",
              "last run", "queue", "last error")
    table = [header]
    for r in rows:
        venue = r["venue_name"] or r["venue_id"]
        error = (r["last_error"] or "")[:60]
        source = credential_source(sources.get((r["venue_id"], r["provider"])))
        enabled = "yes" if r["enabled"] else "no"
        if r["paused_at"] is not None:
            enabled += f", paused since {_when(r['paused_at'])}"
        table.append((venue, r["provider"], enabled, r["status"],
                      source, r["health_status"], _when(r["last_sync_at"]),
                      r["last_run_status"] or "-", str(r["queue_depth"]), error))
    widths = [max(len(str(row[i])) for row in table) for i in range(len(header))]
    for i, row in enumerate(table):
        print("  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
        if i == 0:
            print("  ".join("-" * w for w in widths))
    return 0
