"""``syncd queue``: queue depth, oldest pending job, running jobs; enqueue; prune."""

from __future__ import annotations

import argparse
import json
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg

from daemon.commands._argtypes import DAYS
from daemon.commands._context import CliContext
from daemon.errors import SyncdError
from daemon.queue.types import LANES


def register(subparsers: argparse._SubParsersAction[Any]) -> None:
    p = subparsers.add_parser(
        "queue",
        help="show the sync queue; enqueue a job; prune finished jobs",
        description="Without a sub-command: jobs by lane and status, the oldest pending job's "
        "age, and the running jobs with the worker holding each.",
    )
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=show)
    sub = p.add_subparsers(dest="queue_command", metavar="SUBCOMMAND")

    e = sub.add_parser("enqueue", help="put a job on the queue",
                       description="Enqueue one job. A sync of an integration and entity that "
                       "already has one pending is coalesced into it.")
    e.add_argument("--venue", required=True, help="venue id (UUID)")
    e.add_argument("--provider", required=True)
    e.add_argument("--entity", required=True, help="entity type, e.g. products")
    e.add_argument("--operation", default="sync",
                   choices=["sync", "reconcile", "create", "update", "delete"])
    e.add_argument("--lane", default="NORMAL", type=str.upper, choices=list(LANES))
    e.add_argument("--entity-id", default=None)
    e.add_argument("--payload", default=None, help="JSON object")
    e.add_argument("--idempotency-key", default=None)
    e.add_argument("--json", action="store_true", help="print JSON")
    e.set_defaults(func=enqueue_cmd)

    r = sub.add_parser("prune", help="delete completed and failed jobs past retention",
                       description="Delete completed and failed jobs that finished longer ago "
                       "than the retention period. Dead letters are kept (see syncd dlq).")
    r.add_argument("--older-than-days", type=DAYS, default=None, metavar="DAYS",
                   help="retention in days (default: SYNCD_QUEUE_RETENTION_DAYS)")
    r.set_defaults(func=prune)


def parse_uuid(value: str, what: str) -> uuid.UUID:
    try:
        return uuid.UUID(value)
    except ValueError:
        raise SyncdError(f"{what} {value!r} is not a UUID") from None


@asynccontextmanager
async def queue_connection(ctx: CliContext) -> AsyncIterator[asyncpg.Connection]:
    """A connection to a database that has the queue, or a one-line error."""
    async with ctx.database() as db, db.pool.acquire() as conn:
        if not await conn.fetchval("SELECT to_regproc('syncd_claim_jobs') IS NOT NULL"):
            raise SyncdError("the database has no queue yet: run `syncd migrate` first")
        yield conn


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    s = int(seconds)
    if s < 120:
        return f"{s}s"
    if s < 7200:
        return f"{s // 60}m"
    if s < 172800:
        return f"{s // 3600}h"
    return f"{s // 86400}d"


async def show(args: argparse.Namespace, ctx: CliContext) -> int:
    from daemon.queue.admin import overview

    async with queue_connection(ctx) as conn:
        view = await overview(conn)
    if args.json:
        print(json.dumps(view.as_json(), indent=2))
        return 0
    head = ("LANE", "PENDING", "DUE", "RUNNING", "COMPLETED", "FAILED", "DEAD", "OLDEST")
    rows = [head] + [
        (lane, str(view.depth[lane]["pending"]), str(view.due[lane]),
         str(view.depth[lane]["processing"]), str(view.depth[lane]["completed"]),
         str(view.depth[lane]["failed"]), str(view.depth[lane]["dead_letter"]),
         _age(view.oldest_pending_s[lane]))
        for lane in LANES
    ]
    widths = [max(len(r[c]) for r in rows) for c in range(len(head))]
    for r in rows:
        print("  ".join(cell.ljust(widths[c]) for c, cell in enumerate(r)).rstrip())
    print(f"\nrunning: {len(view.running)}")
    for j in view.running:
        started = j.started_at.strftime("%H:%M:%S") if j.started_at else "-"
        expires = j.lease_expires_at.strftime("%H:%M:%S") if j.lease_expires_at else "-"
        print(f"  #{j.id} {j.venue_id} {j.provider}/{j.entity_type} {j.lane} "
              f"owner={j.lease_owner} started={started} lease_until={expires} "
              f"attempt={j.attempts}")
    return 0


async def enqueue_cmd(args: argparse.Namespace, ctx: CliContext) -> int:
    from daemon.queue.enqueue import enqueue

    venue = parse_uuid(args.venue, "--venue")
    payload: Any = {}
    if args.payload is not None:
        try:
            payload = json.loads(args.payload)
        except json.JSONDecodeError as exc:
            raise SyncdError(f"--payload is not valid JSON: {exc}") from None
        if not isinstance(payload, dict):
            raise SyncdError("--payload must be a JSON object")
    async with queue_connection(ctx) as conn:
        try:
            job_id = await enqueue(
                conn, venue_id=venue, provider=args.provider, entity_type=args.entity,
                operation=args.operation, lane=args.lane, payload=payload,
                entity_id=args.entity_id, idempotency_key=args.idempotency_key,
                correlation_id="cli", max_attempts=ctx.settings.queue_max_attempts,
                ttl_seconds=ctx.settings.queue_job_ttl_seconds,
            )
        except ValueError as exc:
            raise SyncdError(str(exc)) from None
    if args.json:
        print(json.dumps({"job_id": job_id, "coalesced": job_id is None}))
    elif job_id is None:
        print("not enqueued: a pending job already covers it (same idempotency key, or a "
              "pending sync of this integration and entity)")
    else:
        print(f"enqueued job {job_id}")
    return 0


async def prune(args: argparse.Namespace, ctx: CliContext) -> int:
    from daemon.queue.maintenance import prune_finished

    days = args.older_than_days
    if days is None:
        days = ctx.settings.queue_retention_days
    async with queue_connection(ctx) as conn:
        deleted = await prune_finished(conn, older_than_s=days * 86400.0)
    print(f"pruned {deleted} finished job{'s' if deleted != 1 else ''} older than {days:g} days")
    return 0
