"""``syncd schema``: the JSON Schema of venue and template files, for editors."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from daemon.commands._context import CliContext
from daemon.config.schema import json_schemas


def register(subparsers: argparse._SubParsersAction[Any]) -> None:
    p = subparsers.add_parser(
        "schema",
        help="print the JSON Schema of config files",
        description="Print the JSON Schema of venue and template files (both, as one JSON "
        "object keyed by kind, unless --kind is given), or write them to a directory.",
    )
    p.add_argument("--kind", choices=["venue", "template"], default=None)
    p.add_argument("--out", metavar="DIR", type=Path, default=None,
                   help="write venue.schema.json and template.schema.json into DIR")
    p.set_defaults(func=run)


def run(args: argparse.Namespace, ctx: CliContext) -> int:
    schemas = json_schemas()
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        for kind, schema in schemas.items():
            if args.kind in (None, kind):
                path = args.out / f"{kind}.schema.json"
                path.write_text(json.dumps(schema, indent=2) + "\n", encoding="utf-8")
                print(path)
        return 0
    print(json.dumps(schemas[args.kind] if args.kind else schemas, indent=2))
    return 0
