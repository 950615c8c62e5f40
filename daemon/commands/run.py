"""``syncd run``: the daemon people deploy (HTTP, workers, and while leader: reconcile,
scheduling, health). See :mod:`daemon.service` and docs/daemon.md."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from daemon.commands._argtypes import whole_number
from daemon.commands._context import CliContext
from daemon.commands.serve import _port
from daemon.commands.worker import pool_size
from daemon.queue import handlers


def register(subparsers: argparse._SubParsersAction[Any]) -> None:
    p = subparsers.add_parser(
        "run",
        help="run syncd: HTTP, workers, and (while leader) reconcile, schedule, health",
        description="Run every part of syncd in one process: serve HTTP (webhooks, /healthz, "
        "/readyz, /metrics, the admin API), run queue workers (sync jobs and webhook "
        "processing), and while this replica holds leadership (a Postgres advisory lock on "
        "a connection of its own) reconcile the config directory, fire cron ticks and "
        "check integration health. Refuses to start while migrations are pending unless "
        "--migrate or SYNCD_RUN_MIGRATE is given. SIGTERM: stop claiming, let running jobs "
        "finish within SYNCD_WORKER_GRACE_SECONDS, hand back the rest, exit 0; a second "
        "SIGTERM or SIGINT exits at once; SIGHUP reconciles the config now. Speaks "
        "systemd's notify protocol when NOTIFY_SOCKET is set. See docs/daemon.md.",
    )
    p.add_argument("--host", default=None,
                   help="address to listen on (default: SYNCD_HTTP_HOST or 127.0.0.1)")
    p.add_argument("--port", type=_port, default=None,
                   help="port to listen on, 0 for any free one (default: SYNCD_HTTP_PORT or 8080)")
    p.add_argument("--concurrency", type=whole_number(1, 1000), default=None,
                   help="jobs run at once (default: SYNCD_WORKER_CONCURRENCY)")
    p.add_argument("--migrate", action="store_true",
                   help="apply pending migrations at start instead of refusing to start "
                   "(default: SYNCD_RUN_MIGRATE)")
    p.add_argument("--handler", metavar="MODULE:FUNCTION",
                   help="job handler to run instead of syncd's own (default: the 'default' "
                   f"factory of the {handlers.ENTRY_POINT_GROUP} entry-point group)")
    p.add_argument("--owner", default=None,
                   help="name of this replica in leases and logs (default: host:pid:random)")
    p.set_defaults(func=run, exit_at_once=True)


async def run(args: argparse.Namespace, ctx: CliContext) -> int:
    from daemon.service import Daemon

    runtime = ctx.runtime
    settings = runtime.settings
    if args.concurrency is not None:
        runtime.configure(worker_concurrency=args.concurrency)
    runtime.configure(db_pool_max_size=pool_size(runtime.settings) + 2)
    host = args.host or settings.http_host
    port = settings.http_port if args.port is None else args.port

    def listening(url: str) -> None:
        print(f"syncd run: listening on {url}", flush=True)

    async with ctx.open():
        daemon = Daemon(runtime, host=host, port=port, handler=args.handler, owner=args.owner,
                        migrate=args.migrate or settings.run_migrate, on_listening=listening)
        await daemon.run()
    print("syncd run: stopped", file=sys.stderr, flush=True)
    return 0
