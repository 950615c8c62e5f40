"""``syncd demo``: show syncd working end to end on embedded defaults, as far as it goes."""

from __future__ import annotations

import argparse
from typing import Any

from daemon.commands._context import CliContext
from daemon.db import describe_dsn
from daemon.migrate import migration_status


def register(subparsers: argparse._SubParsersAction[Any]) -> None:
    p = subparsers.add_parser(
        "demo",
        help="run syncd end to end on embedded defaults",
        description="Start (or join) the database, migrate it, load the plugins and report "
        "what is there. With no SYNCD_DATABASE_URL this uses the embedded Postgres.",
    )
    p.set_defaults(func=run)


async def run(args: argparse.Namespace, ctx: CliContext) -> int:
    plugins = ctx.plugins
    print(f"plugins: {', '.join(sorted(plugins.providers)) or 'none'}")
    for failure in plugins.failed:
        print(f"  failed to load {failure.name}: {failure.error}")
    async with ctx.database(migrate=True) as db, db.pool.acquire() as conn:
        kind = "embedded" if db.embedded is not None else "configured"
        print(f"database: {describe_dsn(db.dsn)} ({kind})")
        for m in await migration_status(conn):
            print(f"  migration {m.version:04d} {m.name}: {m.state}")
        tables = await conn.fetchval(
            "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'"
        )
        print(f"  {tables} tables")
    return 0
