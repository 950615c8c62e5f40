"""Benchmark: `syncd validate`, `plan` and `apply` against libyaml parsing of the same files.

Generates N venue files (10,000 by default; --quick: 1,000), then, in one run:
  libyaml_parse_s  reading every venue file and parsing it with libyaml (PyYAML's
                   CSafeLoader), nothing else: the anchor;
  plan_s           what `syncd plan` does in-process: read the record of the last apply,
                   read the files, parse with positions and validate those changed since
                   (none here), read the rows a page at a time and diff (the result must
                   be "no changes");
                   ratio_vs_libyaml = plan_s / libyaml_parse_s;
  validate_s       what `syncd validate` does in-process (read, parse and check every
                   file: it has no database, so no record to skip files by);
  plan_one_change_s  plan_s after one venue file changed (one update), with its ratio to
                   libyaml and to plan_s (one_change_vs_no_change: at most 1 wanted);
  *_cli_s, *_rss_mb  `syncd apply` (10,000 new venues, into an empty migrated database;
                   twice, the faster kept),
                   `syncd plan` and `syncd validate` run as subprocesses, each with its wall
                   time and peak resident memory (plan_rss_mb is the issue's figure).
apply_cli_s / libyaml_parse_s is given too (apply_ratio_vs_libyaml): on a busy machine it
says what the apply time would be where libyaml parses as fast as on a quiet one.
The anchor and the in-process figures alternate twice and keep the best of each, so that
load from other processes affects them alike. The providers are small test providers so the
figures do not move with the bundled catalogues; the subprocesses register them with the
same command code (see --child). Postgres is found the way the tests find it
(daemon.testing.postgres). The last line printed is a JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import asyncpg
import yaml

from daemon.config import load_config
from daemon.config.testing import SmallPlugin
from daemon.credential_scope import CredentialScope
from daemon.db import init_connection
from daemon.logs import configure_logging
from daemon.plugins import load_plugins
from daemon.reconcile import apply_desired, load_against_database, plan_from_database
from daemon.testing.postgres import find_server

#: The credential scope the subprocesses get from their settings (in-process loads use the
#: same, so that they skip the same files the commands do).
SCOPE = CredentialScope(env_prefixes=("TESTPROV_",))
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


def libyaml_parse(root: Path) -> float:
    start = time.perf_counter()
    for path in sorted((root / "venues").iterdir()):
        yaml.load(path.read_text(encoding="utf-8"), Loader=yaml.CSafeLoader)
    return time.perf_counter() - start


def child(argv: list[str], rss_file: str) -> int:
    """Run ``syncd ARGV`` with the small test providers registered; write its peak RSS."""
    from daemon import runtime
    from daemon.cli import main as syncd_main

    real = runtime.load_plugins

    def with_small(names: Any, **kwargs: Any) -> Any:
        # Only the small providers, as in-process: no bundled plugin's templates.
        return real([], extra=[("small", SmallPlugin())], **kwargs)

    runtime.load_plugins = with_small  # type: ignore[assignment]
    code = syncd_main(argv)
    # VmHWM, not getrusage: ru_maxrss keeps the forking parent's size across exec.
    status = Path("/proc/self/status").read_text()
    peak = next(int(line.split()[1]) for line in status.splitlines()
                if line.startswith("VmHWM:")) / 1024
    Path(rss_file).write_text(json.dumps({"rss_mb": peak, "code": code}))
    return code


def run_cli(args: list[str], db_url: str, tmp: Path) -> tuple[float, float, int]:
    """(wall seconds, peak RSS in MB, exit code) of ``syncd ARGS`` in a subprocess."""
    rss_file = tmp / f"rss-{uuid.uuid4().hex}.json"
    env = {k: v for k, v in os.environ.items() if not k.startswith("SYNCD_")}
    # -P: not the bench directory first on the path (bench/queue.py is not the queue module)
    env.update(SYNCD_DATABASE_URL=db_url, SYNCD_CREDENTIAL_ENV_PREFIXES="TESTPROV_",
               SYNCD_LOG_LEVEL="warning")
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-P", __file__, "--child", str(rss_file), "--", *args], env=env,
        capture_output=True, text=True, check=False, timeout=600)
    wall = time.perf_counter() - start
    if done.returncode not in (0, 2):
        print(done.stderr[-2000:], file=sys.stderr)
        raise SystemExit(f"syncd {' '.join(args)} failed with exit {done.returncode}")
    report = json.loads(rss_file.read_text())
    return wall, float(report["rss_mb"]), done.returncode


async def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1,000 venues instead of 10,000")
    parser.add_argument("--venues", type=int, default=None)
    args = parser.parse_args()
    venues = args.venues or (1000 if args.quick else 10_000)
    configure_logging("warning", "console")
    plugins = load_plugins([], extra=[("small", SmallPlugin())])
    server = await find_server()
    url = await server.create_database()
    spare = await server.create_database()
    try:
        with tempfile.TemporaryDirectory(prefix="syncd-bench-") as tmp:
            root = Path(tmp) / "config"
            generate(root, venues)
            config = ["--config", str(root)]
            # `syncd apply` of every venue, new, as a subprocess; then once in-process.
            # Twice, each into an empty database, the faster kept (and the larger peak):
            # one run alone moves with whatever else the machine does.
            first_cli = run_cli(["apply", *config], spare, Path(tmp))
            second_cli = run_cli(["apply", *config], url, Path(tmp))
            apply_cli_s = min(first_cli[0], second_cli[0])
            apply_rss = max(first_cli[1], second_cli[1])
            await server.drop_database(spare)
            spare = await server.create_database()
            conn = await asyncpg.connect(spare)
            await init_connection(conn)
            try:
                start = time.perf_counter()
                full = load_config(root, plugins, scope=SCOPE)
                first = await apply_desired(conn, full, force=True)
                apply_s = time.perf_counter() - start
                integrations = len(full.integrations)
                del full
            finally:
                await conn.close()
            conn = await asyncpg.connect(url)
            await init_connection(conn)
            try:
                parse_runs: list[float] = []
                plan_runs: list[float] = []
                load_runs: list[float] = []
                validate_runs: list[float] = []
                one_runs: list[float] = []
                changed = root / "venues" / f"venue-{venues // 2:05d}.yaml"
                for _ in range(2):
                    parse_runs.append(libyaml_parse(root))
                    start = time.perf_counter()
                    desired = await load_against_database(conn, root, plugins, scope=SCOPE)
                    loaded = time.perf_counter()
                    plan = await plan_from_database(conn, desired)
                    plan_runs.append(time.perf_counter() - start)
                    load_runs.append(loaded - start)
                    if plan.has_changes:
                        print(f"unexpected changes: {plan.counts()}", file=sys.stderr)
                        return 1
                    # Right after the no-change plan, so that both run alike.
                    changed.write_text(venue_text(venues // 2, cron="*/5 * * * *"))
                    start = time.perf_counter()
                    one_plan = await plan_from_database(
                        conn, await load_against_database(conn, root, plugins, scope=SCOPE))
                    one_runs.append(time.perf_counter() - start)
                    changed.write_text(venue_text(venues // 2))
                    start = time.perf_counter()
                    load_config(root, plugins, scope=SCOPE)
                    validate_runs.append(time.perf_counter() - start)
                plan_cli_s, plan_rss, plan_code = run_cli(["plan", *config], url, Path(tmp))
                validate_cli_s, validate_rss, _ = run_cli(["validate", *config], url,
                                                          Path(tmp))
                changed.write_text(venue_text(venues // 2, cron="*/5 * * * *"))
                one = await apply_desired(
                    conn, await load_against_database(conn, root, plugins, scope=SCOPE))
            finally:
                await conn.close()
    finally:
        await server.drop_database(url)
        await server.drop_database(spare)
        await server.close()
    parse_s, plan_s, load_s = min(parse_runs), min(plan_runs), min(load_runs)
    result = {
        "venues": venues,
        "integrations": integrations,
        "libyaml_parse_s": round(parse_s, 3),
        "plan_s": round(plan_s, 3),
        "ratio_vs_libyaml": round(plan_s / parse_s, 3),
        "validate_s": round(min(validate_runs), 3),
        "validate_ratio_vs_libyaml": round(min(validate_runs) / parse_s, 3),
        "plan_load_validate_s": round(load_s, 3),
        "plan_db_diff_s": round(plan_s - load_s, 3),
        "plan_one_change_s": round(min(one_runs), 3),
        "one_change_ratio_vs_libyaml": round(min(one_runs) / parse_s, 3),
        "one_change_vs_no_change": round(min(one_runs) / plan_s, 3),
        "changes_in_one_change_plan": len(one_plan.changes),
        "initial_apply_s": round(apply_s, 3),
        "initial_rows_written": first.integration_rows_written,
        "rows_written_for_one_change": one.integration_rows_written,
        "changes_for_one_change": len(one.plan.changes),
        "apply_cli_s": round(apply_cli_s, 3),
        "apply_ratio_vs_libyaml": round(apply_cli_s / parse_s, 3),
        "apply_rss_mb": round(apply_rss, 1),
        "plan_cli_s": round(plan_cli_s, 3),
        "plan_cli_exit": plan_code,
        "plan_rss_mb": round(plan_rss, 1),
        "validate_cli_s": round(validate_cli_s, 3),
        "validate_rss_mb": round(validate_rss, 1),
        "postgres": server.kind,
    }
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    if sys.argv[1:2] == ["--child"]:  # --child RSS_FILE -- ARGS: one syncd command
        sys.exit(child(sys.argv[4:], sys.argv[2]))
    sys.exit(asyncio.run(main()))
