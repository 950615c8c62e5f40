"""``syncd sync VENUE PROVIDER``: run one integration's sync now, in the foreground.

The run takes the integration's running slot in the queue as a worker's claim does (see
:mod:`daemon.worker.hold`): it never overlaps a worker's job of the same integration (nor
another ``syncd sync``), so the provider account sees one run at a time, paced to its limits,
and every write is fenced by the run's lease as a job's are. A dry run writes nothing and
takes no slot.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any, TextIO

import asyncpg

from daemon.commands._context import CliContext
from daemon.errors import SyncdError
from daemon.provider import Entity
from daemon.queue.types import LeaseLost
from daemon.sync import RunOutcome, RunReport, SyncEngine, SyncError
from daemon.worker.hold import hold_integration
from daemon.worker.runner import default_owner

__all__ = ["ProgressBar", "register", "render_summary"]

_DRY_RUN_SHOWN = 20


def register(subparsers: argparse._SubParsersAction[Any]) -> None:
    p = subparsers.add_parser(
        "sync",
        help="sync one venue's integration with a provider now",
        description="Read the venue's rows from the platform, map them, and push what changed "
        "to the provider (pulling where it supports that). Runs in the foreground with a "
        "progress bar on a terminal and a summary table at the end. Exit status: 0 when "
        "every record synced, 1 when some failed or the run stopped.",
    )
    p.add_argument("venue", metavar="VENUE", help="venue id (uuid) or venue name")
    p.add_argument("provider", metavar="PROVIDER", help="provider name, e.g. square")
    p.add_argument("--entity", choices=[e.value for e in Entity],
                   help="only this entity (default: every mapped entity)")
    p.add_argument("--full", action="store_true",
                   help="rescan every row instead of only rows changed since the last run, "
                   "and find rows deleted at the source")
    p.add_argument("--dry-run", action="store_true",
                   help="show what would be sent; send and record nothing")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.add_argument("--wait", action="store_true",
                   help="when a job of this integration is running, wait for it to finish "
                   "(default: refuse with exit status 1)")
    p.set_defaults(func=run)


class ProgressBar:
    """One line per entity on a terminal: a bar when the total is known."""

    def __init__(self, stream: TextIO, width: int = 30) -> None:
        self.stream = stream
        self.width = width
        self.current: Entity | None = None
        self.started = time.monotonic()
        self._last = 0.0

    def __call__(self, entity: Entity, scanned: int, sent: int, total: int | None) -> None:
        now = time.monotonic()
        if entity != self.current:
            if self.current is not None:
                self.stream.write("\n")
            self.current = entity
            self.started = now
        elif now - self._last < 0.1 and (total is None or scanned < total):
            return
        self._last = now
        rate = scanned / max(now - self.started, 1e-6)
        if total:
            done = min(1.0, scanned / total)
            filled = int(done * self.width)
            bar = "#" * filled + "-" * (self.width - filled)
            line = f"{entity.value:<12} [{bar}] {scanned}/{total} read, {sent} sent"
        else:
            line = f"{entity.value:<12} {scanned} read, {sent} sent"
        self.stream.write(f"\r{line} ({rate:,.0f}/s)\033[K")
        self.stream.flush()

    def close(self) -> None:
        if self.current is not None:
            self.stream.write("\n")
            self.stream.flush()


def render_summary(report: RunReport) -> str:
    """The end-of-run table."""
    cols = ("entity", "read", "unchanged", "created", "updated", "deleted", "archived",
            "frozen", "failed", "sent", "pulled")
    rows = [cols]
    for e in report.entities:
        rows.append((e.entity.value + (" (full)" if e.full_check else ""), str(e.scanned),
                     str(e.unchanged), str(e.created), str(e.updated), str(e.deleted),
                     str(e.archived), str(e.frozen), str(e.failed), str(e.sent),
                     str(e.pulled)))
    widths = [max(len(r[i]) for r in rows) for i in range(len(cols))]
    lines = ["  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w)
                       in enumerate(zip(row, widths, strict=True))) for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    what = "dry run" if report.dry_run else report.status
    lines.append("")
    lines.append(f"{report.provider} for venue {report.venue_id}: {what} in "
                 f"{report.duration_ms / 1000:.1f} s, {report.api_calls} API calls")
    for change in report.healed:
        lines.append(f"mapping healed: {change.describe()}")
    if report.frozen:
        lines.append(f"frozen: {report.frozen} not sent (changed since they were sent, and "
                     f"{report.provider} cannot change them once created)")
    if report.error:
        lines.append(f"error: {report.error}")
    for err in report.errors[:10]:
        lines.append(f"failed {err.entity} {err.local_id}: {err.error}")
    if len(report.errors) > 10:
        lines.append(f"... and {report.failed - 10} more failed records (see sync_logs)")
    return "\n".join(lines)


def _dry_run_lines(report: RunReport) -> list[str]:
    lines = []
    for e in report.entities:
        for planned in e.planned[:_DRY_RUN_SHOWN]:
            target = planned.remote_id or "new"
            lines.append(f"would {planned.operation} {e.entity.value} {planned.local_id} "
                         f"({target}): {json.dumps(planned.payload, default=str)}")
        if len(e.planned) > _DRY_RUN_SHOWN:
            lines.append(f"... and {len(e.planned) - _DRY_RUN_SHOWN} more {e.entity.value}s")
    return lines


def _as_json(report: RunReport) -> dict[str, Any]:
    return {"venue_id": report.venue_id, "provider": report.provider,
            "status": "dry_run" if report.dry_run else report.status,
            "outcome": report.outcome.value, "error": report.error,
            "api_calls": report.api_calls, "duration_ms": report.duration_ms,
            "entities": {e.entity.value: e.as_json() for e in report.entities},
            "healed": [c.describe() for c in report.healed],
            "errors": [e.as_json() for e in report.errors],
            "planned": [{"entity": p.entity, "local_id": p.local_id, "operation": p.operation,
                         "remote_id": p.remote_id, "payload": p.payload}
                        for e in report.entities for p in e.planned]}


async def _run(engine: SyncEngine, pool: asyncpg.Pool, args: argparse.Namespace,
               ctx: CliContext, bar: ProgressBar | None) -> RunReport:
    entity = Entity(args.entity) if args.entity else None
    integration = await engine.integration(args.venue, args.provider)
    if integration["paused_at"] is not None:
        by = f" by {integration['paused_by']}" if integration["paused_by"] else ""
        raise SyncdError(
            f"the {args.provider} integration of venue {args.venue} is paused (since "
            f"{integration['paused_at']:%Y-%m-%d %H:%M:%S} UTC{by}); run `syncd resume` "
            "first")
    if args.dry_run:
        return await engine.run(args.venue, args.provider, entity=entity, full=args.full,
                                dry_run=True, progress=bar)
    settings = ctx.settings
    async with hold_integration(
        pool, integration["venue_id"], args.provider, owner=f"syncd-sync:{default_owner()}",
        lease_seconds=settings.queue_lease_seconds,
        heartbeat_seconds=settings.queue_heartbeat_seconds,
        entity=entity.value if entity else "all", payload={"full": args.full},
        wait=args.wait, poll_seconds=settings.queue_poll_seconds, venue_label=args.venue,
    ) as hold:
        report = await engine.run(
            args.venue, args.provider, entity=entity, full=args.full, progress=bar,
            job_id=hold.job.id, guard=hold.ctx.assert_lease,
            cancelled=lambda: hold.ctx.cancelled)
        if report.status not in ("completed", "partial"):
            hold.error = report.error or report.status
            hold.error_kind = "auth" if report.outcome is RunOutcome.AUTH else "permanent"
        return report


async def run(args: argparse.Namespace, ctx: CliContext) -> int:
    bar = ProgressBar(sys.stderr) if sys.stderr.isatty() and not args.json else None
    async with ctx.open() as runtime:
        try:
            report = await _run(runtime.engine, runtime.pool, args, ctx, bar)
        except SyncError as exc:
            raise SyncdError(str(exc)) from None
        except LeaseLost:
            raise SyncdError(
                f"the {args.provider} sync of venue {args.venue} stopped: its lease was "
                "taken over (the run was too slow to renew it); run it again") from None
        finally:
            if bar is not None:
                bar.close()
    if args.json:
        print(json.dumps(_as_json(report), default=str))
    else:
        if report.dry_run:
            for line in _dry_run_lines(report):
                print(line)
            print()
        print(render_summary(report))
    if report.dry_run:
        return 0 if report.error is None else 1
    return 0 if report.status == "completed" else 1
