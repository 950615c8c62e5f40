"""``syncd plugins``: list loaded plugins, their providers and hooks."""

from __future__ import annotations

import argparse
import json
from typing import Any

from daemon.commands._context import CliContext


def register(subparsers: argparse._SubParsersAction[Any]) -> None:
    p = subparsers.add_parser(
        "plugins",
        help="list installed plugins",
        description="List plugins of the syncd.plugins entry-point group: name, version, "
        "providers and hooks, and any that failed to load.",
    )
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=run)


def run(args: argparse.Namespace, ctx: CliContext) -> int:
    plugins = ctx.plugins
    if args.json:
        print(json.dumps({
            "plugins": [
                {
                    "name": i.name,
                    "version": i.version,
                    "distribution": i.distribution,
                    "module": i.module,
                    "providers": list(i.providers),
                    "hooks": list(i.hooks),
                }
                for i in plugins.loaded
            ],
            "failed": [{"name": f.name, "error": f.error} for f in plugins.failed],
        }, indent=2))
        return 0
    rows = [("NAME", "VERSION", "PROVIDERS", "HOOKS")] + [
        (i.name, i.version or "-", ",".join(i.providers) or "-", ",".join(i.hooks))
        for i in plugins.loaded
    ]
    widths = [max(len(r[c]) for r in rows) for c in range(3)]
    for r in rows:
        print(f"{r[0]:<{widths[0]}}  {r[1]:<{widths[1]}}  {r[2]:<{widths[2]}}  {r[3]}")
    for f in plugins.failed:
        print(f"failed: {f.name}: {f.error}")
    return 0
