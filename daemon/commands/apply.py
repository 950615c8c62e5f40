"""``syncd apply``: make the database what the config declares, in one transaction."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
from typing import Any

from daemon.commands._config_args import (
    add_config_dir,
    config_dir,
    config_limits,
    credential_scope,
    print_problems,
)
from daemon.commands._context import CliContext
from daemon.config import ConfigInvalid, require_config_dir
from daemon.reconcile import (
    Reconciler,
    apply_desired,
    git_commit,
    load_against_database,
    render_plan,
)


def register(subparsers: argparse._SubParsersAction[Any]) -> None:
    p = subparsers.add_parser(
        "apply",
        help="apply the config to the database",
        description="Apply the config in one transaction and record the revision. "
        "Integrations the config no longer lists are disabled (tokens kept), or deleted "
        "with --prune. Switching off more than SYNCD_CONFIG_MAX_DISABLE_SHARE of them, or "
        "all of them, needs --force. --watch keeps running and re-applies on SIGHUP and "
        "on file changes.",
    )
    add_config_dir(p)
    p.add_argument("--prune", action="store_true",
                   help="delete (instead of disabling) what the config no longer lists")
    p.add_argument("--force", action="store_true",
                   help="apply even when it switches off many or all integrations")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.add_argument("--watch", action="store_true",
                   help="keep reconciling on SIGHUP and file changes until interrupted")
    p.set_defaults(func=run)


async def run(args: argparse.Namespace, ctx: CliContext) -> int:
    directory = config_dir(args, ctx)
    settings = ctx.settings
    if args.watch:
        async with ctx.database(migrate=True) as db:
            reconciler = Reconciler(
                db.pool, ctx.plugins, directory, poll_interval=settings.config_poll_interval,
                max_disable_share=settings.config_max_disable_share, prune=args.prune,
                source="watch", limits=config_limits(ctx), scope=credential_scope(ctx))
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(signal.SIGTERM, stop.set)
            await reconciler.run(stop)
        return 0
    require_config_dir(directory)  # said before the database is opened
    commit = await asyncio.to_thread(git_commit, directory)
    try:
        async with ctx.database(migrate=True) as db, db.pool.acquire() as conn:
            # The venue files unchanged since the last apply are not read again.
            desired = await load_against_database(
                conn, directory, ctx.plugins, limits=config_limits(ctx),
                scope=credential_scope(ctx))
            result = await apply_desired(
                conn, desired, prune=args.prune, force=args.force,
                max_disable_share=settings.config_max_disable_share, source="cli",
                commit=commit)
    except ConfigInvalid as exc:
        print_problems(exc, as_json=args.json)
        return 1
    if args.json:
        out = result.plan.as_dict()
        out["revision_id"] = result.revision_id
        print(json.dumps(out, indent=2, default=str))
        return 0
    if result.plan.has_changes:
        print(render_plan(result.plan))
    if result.revision_id is None:
        print("Nothing to apply: the database matches the config.")
    else:
        c = result.plan.counts()
        print(f"Applied revision {result.revision_id}: {c['create']} created, "
              f"{c['update']} updated, {c['disable']} disabled, {c['delete']} deleted.")
    return 0
