"""Prove it under faults: each scenario breaks something on purpose against real syncd
processes, the real Postgres (a fresh database per scenario) and the providers' emulators,
and counts what was lost, duplicated, forged or leaked.

    python -m bench.prove            # every scenario at full size (make prove)
    python -m bench.prove --quick    # CI sizes (tests/reliability runs these)
    python -m bench.prove --only kill-workers --only webhook-storm
    python -m bench.prove --list

Prints a scoreboard, then, as its last line, a JSON object: ``{"scenarios": [{"name",
"load", "faults", "lost", "duplicated", "forged_accepted", "leaked", "passed", "status"},
...], "all_passed": bool, "pending": [names]}``. A scenario whose prerequisites are not built
yet is listed as pending: never counted as passed, never run. The exit status is 1 when any
scenario that ran failed. docs/prove.md says what each scenario does.
"""

from __future__ import annotations

import sys

# Run as a script, Python puts bench/ first on sys.path, where bench/queue.py would shadow the
# standard library's queue module.
if sys.path and sys.path[0].rstrip("/").endswith("bench"):
    del sys.path[0]

import argparse
import asyncio
import json
import time
import traceback

from bench.proving import scenarios  # noqa: F401 - registers every scenario
from bench.proving.registry import (
    SCENARIOS,
    Context,
    Result,
    pending_result,
    scoreboard,
)
from daemon.logs import configure_logging
from daemon.testing.postgres import find_server


async def run_one(name: str, context: Context) -> Result:
    """One scenario by name: its result, or a failed result saying why it broke."""
    item = SCENARIOS[name]
    if item.pending:
        return pending_result(item)
    start = time.monotonic()
    try:
        result = await item.run(context)
    except Exception as exc:
        result = Result(name)
        result.notes.append(f"the scenario itself failed: {type(exc).__name__}: {exc}")
        result.notes.append(traceback.format_exc(limit=6).replace("\n", " | ")[-1500:])
    result.seconds = time.monotonic() - start
    return result


async def run(names: list[str], *, quick: bool, seed: int = 15) -> list[Result]:
    server = await find_server()
    await server.create_template()
    context = Context(server, quick=quick, seed=seed)
    try:
        results = []
        for name in names:
            print(f"== {name}", file=sys.stderr, flush=True)
            result = await run_one(name, context)
            print(f"   {result.status} in {result.seconds:.0f}s", file=sys.stderr, flush=True)
            results.append(result)
        return results
    finally:
        await server.close()


def summary(results: list[Result]) -> dict[str, object]:
    ran = [r for r in results if r.status != "pending"]
    return {"scenarios": [r.row() for r in results],
            "all_passed": bool(ran) and all(r.passed for r in ran),
            "pending": [r.name for r in results if r.status == "pending"]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.prove",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="CI sizes (a few minutes)")
    parser.add_argument("--only", action="append", default=[], metavar="NAME",
                        help="run this scenario (repeatable); default: all")
    parser.add_argument("--seed", type=int, default=15, help="seed of every random choice")
    parser.add_argument("--list", action="store_true", help="list the scenarios and exit")
    args = parser.parse_args(argv)
    ordered = sorted(SCENARIOS.values(), key=lambda s: s.number)
    if args.list:
        for item in ordered:
            mark = f"  (pending: {item.pending})" if item.pending else ""
            print(f"{item.number:>2} {item.name}: {item.summary}{mark}")
        return 0
    unknown = [n for n in args.only if n not in SCENARIOS]
    if unknown:
        print(f"unknown scenario: {', '.join(unknown)} (see --list)", file=sys.stderr)
        return 2
    names = args.only or [s.name for s in ordered]
    configure_logging("error", "console", sys.stderr)
    results = asyncio.run(run(names, quick=args.quick, seed=args.seed))
    print(scoreboard(results))
    out = summary(results)
    print(json.dumps(out))
    return 0 if out["all_passed"] or not any(r.status == "failed" for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
