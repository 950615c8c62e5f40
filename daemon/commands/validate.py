"""``syncd validate``: check the config directory against the loaded plugins."""

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
from daemon.config import ConfigInvalid, load_config


def register(subparsers: argparse._SubParsersAction[Any]) -> None:
    p = subparsers.add_parser(
        "validate",
        help="check venue and template YAML",
        description="Check every venue and template file; report every problem with "
        "file:line:column, the key and a hint. Exit 1 when anything is wrong. Needs no "
        "database.",
    )
    add_config_dir(p)
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(func=run)


def run(args: argparse.Namespace, ctx: CliContext) -> int:
    directory = config_dir(args, ctx)
    try:
        desired = load_config(directory, ctx.plugins, limits=config_limits(ctx),
                              scope=credential_scope(ctx))
    except ConfigInvalid as exc:
        print_problems(exc, as_json=args.json)
        return 1
    venues = len({i.venue_id for i in desired.integrations} |
                 {t.venue_id for t in desired.tombstones})
    if args.json:
        print(json.dumps({"valid": True, "files": desired.files, "venues": venues,
                          "integrations": len(desired.integrations),
                          "templates": len(desired.templates),
                          "content_hash": desired.content_hash}, indent=2))
    else:
        print(f"{directory}: valid ({desired.files} files, {len(desired.integrations)} "
              f"integrations, {len(desired.templates)} templates)")
    return 0
