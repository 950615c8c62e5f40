"""``syncd plan``: what ``syncd apply`` would change, with Terraform's detailed exit codes."""

from __future__ import annotations

import argparse
import json
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
    disable_guard,
    load_against_database,
    plan_from_database,
    render_plan,
)


def register(subparsers: argparse._SubParsersAction[Any]) -> None:
    p = subparsers.add_parser(
        "plan",
        help="show what apply would change",
        description="Compare the config directory with the database: integrations and "
        "templates to create, update (field by field, including changes made directly in "
        "the database), disable or, with --prune, delete. Exit 0: no changes; 2: changes; "
        "1: error.",
    )
    add_config_dir(p)
    p.add_argument("--prune", action="store_true",
                   help="plan deletion (not disabling) of what the config no longer lists")
    p.add_argument("--json", action="store_true", help="print the plan as JSON")
    p.set_defaults(func=run)


async def run(args: argparse.Namespace, ctx: CliContext) -> int:
    directory = config_dir(args, ctx)
    require_config_dir(directory)  # said before the database is opened
    try:
        # The venue files unchanged since the last apply are not read again (its record is
        # read in the same snapshot as the rows).
        async with ctx.database() as db, db.pool.acquire() as conn, \
                conn.transaction(readonly=True, isolation="repeatable_read"):
            desired = await load_against_database(
                conn, directory, ctx.plugins, limits=config_limits(ctx),
                scope=credential_scope(ctx))
            plan = await plan_from_database(conn, desired, prune=args.prune)
    except ConfigInvalid as exc:
        print_problems(exc, as_json=args.json)
        return 1
    guard = disable_guard(plan, ctx.settings.config_max_disable_share)
    if args.json:
        out = plan.as_dict()
        out["refused_without_force"] = guard
        print(json.dumps(out, indent=2, default=str))
    else:
        print(render_plan(plan, guard=guard))
    return 2 if plan.has_changes else 0
