"""Benchmark: `plan` with no changes against plain YAML parsing of the same venue files.

Generates N venue files (10,000 by default; --quick: 1,000), applies them to a fresh
database, then times
  parse_s  reading and parsing every file with ruamel.yaml's safe loader, nothing else;
  plan_s   what `syncd plan` does: read, parse with positions, validate against the plugins,
           resolve templates, fetch every row and diff (the result must be "no changes");
and changes one venue's schedule to count the integration rows an apply writes (goal: 1).
The providers are small test providers so the figures do not move with the bundled
catalogues. Postgres is found the way the tests find it (daemon.testing.postgres).
The last line printed is a JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
import uuid
from pathlib import Path

import asyncpg
from ruamel.yaml import YAML

from daemon.config import load_config
from daemon.config.testing import SmallPlugin
from daemon.db import init_connection
from daemon.logs import configure_logging
from daemon.plugins import load_plugins
from daemon.reconcile import apply_desired, fetch_actual, make_plan
from daemon.testing.postgres import find_server

TYPES = ["Laugh Works", "Concert Hall", "Playhouse Theatre", "Summer Festival", "Arena"]


def venue_text(i: int, cron: str = "*/15 * * * *") -> str:
    vid = uuid.UUID(int=i + 1)
    name = f"{TYPES[i % len(TYPES)]} {i}"
    return f"""\
venue:
  id: {vid}
  name: {name}
  timezone: Europe/London
integrations:
  - provider: testprov
    credentials:
      api_key: env:TESTPROV_KEY_{i}
    schedules:
      product: {{cron: "{cron}", lane: HIGH}}
      customer: {{cron: "{i % 60} * * * *", direction: both}}
    mapping:
      overrides:
        customer:
          source: {{const: venue-{i}}}
    options:
      list_id: list-{i}
  - provider: testoauth
    credentials: oauth
    schedules:
      customer: {{cron: "0 3 * * *", lane: LOW}}
"""


def generate(root: Path, venues: int) -> None:
    (root / "venues").mkdir(parents=True)
    (root / "templates").mkdir()
    (root / "templates" / "festival.yaml").write_text(
        "name: festival\nprovider: testprov\nvenue_type: festival\nmappings:\n"
        "  product:\n    title: event.name\n    starts: event.starts_at\n"
        "  customer:\n    email: customer.email\n")
    for i in range(venues):
        (root / "venues" / f"venue-{i:05d}.yaml").write_text(venue_text(i))


def plain_parse(root: Path) -> float:
    yaml = YAML(typ="safe", pure=True)
    start = time.perf_counter()
    for path in sorted((root / "venues").iterdir()):
        yaml.load(path.read_text(encoding="utf-8"))
    return time.perf_counter() - start


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1,000 venues instead of 10,000")
    parser.add_argument("--venues", type=int, default=None)
    args = parser.parse_args()
    venues = args.venues or (1000 if args.quick else 10_000)
    configure_logging("warning", "console")
    plugins = load_plugins([], extra=[("small", SmallPlugin())])
    server = await find_server()
    url = await server.create_database()
    try:
        with tempfile.TemporaryDirectory(prefix="syncd-bench-") as tmp:
            root = Path(tmp) / "config"
            generate(root, venues)
            conn = await asyncpg.connect(url)
            await init_connection(conn)
            try:
                start = time.perf_counter()
                first = await apply_desired(conn, load_config(root, plugins), force=True)
                apply_s = time.perf_counter() - start
                # Alternate the two measurements so that load from other processes on the
                # machine affects both alike; keep the best of each.
                parse_runs, plan_runs, load_runs = [], [], []
                for _ in range(2):
                    parse_runs.append(plain_parse(root))
                    start = time.perf_counter()
                    desired = load_config(root, plugins)
                    loaded = time.perf_counter()
                    plan = make_plan(desired, await fetch_actual(conn))
                    plan_runs.append(time.perf_counter() - start)
                    load_runs.append(loaded - start)
                    if plan.has_changes:
                        print(f"unexpected changes: {plan.counts()}", file=sys.stderr)
                        return 1
                parse_s, plan_s, load_s = min(parse_runs), min(plan_runs), min(load_runs)
                changed = venues // 2
                (root / "venues" / f"venue-{changed:05d}.yaml").write_text(
                    venue_text(changed, cron="*/5 * * * *"))
                one = await apply_desired(conn, load_config(root, plugins))
            finally:
                await conn.close()
    finally:
        await server.drop_database(url)
        await server.close()
    result = {
        "venues": venues,
        "integrations": len(desired.integrations),
        "parse_s": round(parse_s, 3),
        "plan_s": round(plan_s, 3),
        "ratio": round(plan_s / parse_s, 3),
        "plan_load_validate_s": round(load_s, 3),
        "plan_db_diff_s": round(plan_s - load_s, 3),
        "initial_apply_s": round(apply_s, 3),
        "initial_rows_written": first.integration_rows_written,
        "rows_written_for_one_change": one.integration_rows_written,
        "changes_for_one_change": len(one.plan.changes),
        "postgres": server.kind,
    }
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
