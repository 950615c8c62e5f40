"""``syncd worker``: run queue workers and (while leader) the cron scheduler."""

from __future__ import annotations

import argparse
from typing import Any

from daemon.commands._argtypes import whole_number
from daemon.commands._context import CliContext
from daemon.errors import SyncdError
from daemon.queue import handlers
from daemon.settings import Settings


def register(subparsers: argparse._SubParsersAction[Any]) -> None:
    p = subparsers.add_parser(
        "worker",
        help="run queue workers and the cron scheduler",
        description="Claim and run sync jobs with the registered job handler, and fire cron "
        "ticks while this replica holds scheduler leadership. SIGTERM stops claiming, lets "
        "running jobs finish within SYNCD_WORKER_GRACE_SECONDS and releases their leases. "
        "Refuses to start when no job handler is registered.",
    )
    p.add_argument("--handler", metavar="MODULE:FUNCTION",
                   help="job handler to run (default: the registered one, or the "
                   f"'default' entry of the {handlers.ENTRY_POINT_GROUP} entry-point group)")
    p.add_argument("--concurrency", type=whole_number(1, 1000), default=None,
                   help="jobs run at once (default: SYNCD_WORKER_CONCURRENCY)")
    p.add_argument("--no-scheduler", action="store_true",
                   help="never run the scheduler in this process")
    p.add_argument("--owner", default=None, help="name of this worker in leases "
                   "(default: host:pid:random)")
    p.set_defaults(func=run)


async def run(args: argparse.Namespace, ctx: CliContext) -> int:
    from daemon.worker.process import run_worker_process

    runtime = ctx.runtime
    if args.concurrency is not None:
        if args.concurrency < 1:
            raise SyncdError("--concurrency must be at least 1")
        runtime.configure(worker_concurrency=args.concurrency)
    runtime.configure(db_pool_max_size=pool_size(runtime.settings))
    async with ctx.open(migrate=True):
        handler = runtime.job_handler(args.handler)
        await run_worker_process(runtime, handler, scheduler=not args.no_scheduler,
                                 owner=args.owner)
    return 0


def pool_size(settings: Settings) -> int:
    """Room in the pool for the control connection (LISTEN and heartbeats), the exchange
    loops, housekeeping and the scheduler, plus one connection per running job. A job never
    holds one connection while it waits for another, and every acquire times out
    (SYNCD_DB_ACQUIRE_TIMEOUT) into a retry, so a busier pool is slower, never stuck."""
    return max(settings.db_pool_max_size, settings.worker_concurrency + 6)
