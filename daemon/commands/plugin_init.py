"""``syncd plugin init NAME``: scaffold a third-party provider plugin distribution."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from daemon.commands._context import CliContext
from daemon.errors import SyncdError
from daemon.scaffold import ScaffoldError, plugin_names, render


def register(subparsers: argparse._SubParsersAction[Any]) -> None:
    p = subparsers.add_parser(
        "plugin",
        help="tools for plugin authors",
        description="Tools for writing provider plugins (see docs/writing-plugins.md).",
    )
    sub = p.add_subparsers(dest="plugin_command", metavar="COMMAND", required=True)
    init = sub.add_parser(
        "init",
        help="scaffold a provider plugin distribution",
        description="Create a plugin distribution (provider, client, emulator and the "
        "conformance kit's tests) whose tests pass as generated. Fill in the real API.",
    )
    init.add_argument("name", metavar="NAME", help="provider name, e.g. acme or acme-crm")
    init.add_argument("--dir", type=Path, default=None,
                      help="where to create it (default: ./syncd-NAME)")
    init.set_defaults(func=run)


def run(args: argparse.Namespace, ctx: CliContext) -> int:
    try:
        names = plugin_names(args.name)
        target: Path = args.dir if args.dir is not None else Path.cwd() / names.dist
        written = render(names, target)
    except ScaffoldError as exc:
        raise SyncdError(str(exc)) from None
    print(f"created {names.dist} in {target} ({len(written)} files)")
    print(f"  provider {names.name!r}, package {names.package}")
    print("next:")
    print(f"  cd {target}")
    print("  pip install -e '.[test]'")
    print("  pytest                     # the conformance kit against the emulator")
    print(f"  syncd emulate {names.name} --port 8099")
    return 0
