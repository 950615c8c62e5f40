"""Mutation testing over syncd's core: does each deliberate bug fail the tests that cover it?

The mutants are a curated list (tools/mutants.py): each one a small textual change to one
file, Python or SQL, with the test files that cover that code. For each mutant this script
applies the change in a scratch copy of the repository, runs those tests there with pytest
(stopping at the first failure) and restores the file. A mutant is *killed* when the tests
fail, *survived* when they pass. Mutants listed as equivalent (the change cannot alter
behaviour, with the reason) are reported and not run.

    .venv/bin/python tools/mutate.py              # every mutant
    .venv/bin/python tools/mutate.py -k queue     # mutants whose id contains "queue"
    .venv/bin/python tools/mutate.py --list       # what would run

The working tree is never modified: the copy lives in a temporary directory and is put first
on PYTHONPATH, so the editable install and the CLI subprocesses import the mutated code.
Exit status: 0 when every non-equivalent mutant was killed, 1 otherwise.
"""

from __future__ import annotations

import argparse
import os
import queue
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from mutants import MUTANTS, Mutant

ROOT = Path(__file__).resolve().parent.parent
#: Per mutant; a hung test run counts as killed (the tests noticed something).
TIMEOUT_S = 600


def _tracked_files() -> list[str]:
    out = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],  # noqa: S607
        cwd=ROOT, check=True, capture_output=True).stdout
    return [p for p in out.decode().split("\0") if p]


def _copy_tree(dest: Path) -> None:
    for rel in _tracked_files():
        src = ROOT / rel
        if not src.is_file():
            continue
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, target)


def _check(mutant: Mutant, root: Path) -> str | None:
    """Why ``mutant`` cannot be applied, or None."""
    path = root / mutant.path
    if not path.is_file():
        return f"no file {mutant.path}"
    text = path.read_text()
    for find, _ in ((mutant.find, mutant.replace), *mutant.also):
        count = text.count(find)
        if count != 1:
            return f"{mutant.path}: the text to change occurs {count} times, not once"
    return None


def _run(mutant: Mutant, root: Path, python: str) -> tuple[str, float]:
    path = root / mutant.path
    original = path.read_text()
    mutated = original
    for find, replace_with in ((mutant.find, mutant.replace), *mutant.also):
        mutated = mutated.replace(find, replace_with, 1)
    path.write_text(mutated)
    env = dict(os.environ)
    env["PYTHONPATH"] = str(root) + os.pathsep + env.get("PYTHONPATH", "")
    env.pop("PYTEST_ADDOPTS", None)
    cmd = [python, "-m", "pytest", "-x", "-q", "-p", "no:randomly", "-n", "0",
           "--timeout", "300", *mutant.tests]
    start = time.monotonic()
    try:
        proc = subprocess.run(  # noqa: S603 - our own pytest
            cmd, cwd=root, env=env, capture_output=True, text=True, timeout=TIMEOUT_S,
            check=False)
        code = proc.returncode
        tail = (proc.stdout + proc.stderr).strip().splitlines()[-1:] or [""]
    except subprocess.TimeoutExpired:
        code, tail = -1, ["timed out"]
    finally:
        path.write_text(original)
    elapsed = time.monotonic() - start
    if code == 0:
        return "survived", elapsed
    if code in (1, 2, -1):  # failures, a collection error (the module broke), a hang
        return "killed", elapsed
    return f"error (pytest exit {code}: {tail[0]})", elapsed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-k", dest="select", default="",
                        help="run only mutants whose id contains this text")
    parser.add_argument("--list", action="store_true", help="list the mutants and exit")
    parser.add_argument("-j", dest="jobs", type=int, default=1,
                        help="mutants run at once, each in a copy of its own (default 1)")
    parser.add_argument("--tests", nargs="+", metavar="PATH",
                        help="run these tests against each mutant instead of its own")
    args = parser.parse_args(argv)
    chosen = [m for m in MUTANTS if args.select in m.id]
    if args.tests:
        chosen = [replace(m, tests=tuple(args.tests)) for m in chosen]
    ids = Counter(m.id for m in MUTANTS)
    dupes = [i for i, n in ids.items() if n > 1]
    if dupes:
        print(f"duplicate mutant ids: {', '.join(dupes)}", file=sys.stderr)
        return 2
    if args.list:
        for m in chosen:
            flag = "  (equivalent)" if m.equivalent else ""
            print(f"{m.id:40} {m.path}: {m.what}{flag}")
        return 0

    python = str(ROOT / ".venv" / "bin" / "python")
    if not Path(python).exists():
        python = sys.executable
    results: dict[str, list[tuple[Mutant, str]]] = defaultdict(list)
    with tempfile.TemporaryDirectory(prefix="syncd-mutate-") as tmp:
        roots: queue.Queue[Path] = queue.Queue()
        for i in range(max(1, args.jobs)):
            root = Path(tmp) / f"copy{i}"
            _copy_tree(root)
            roots.put(root)
        first = roots.get()
        problems = [(m, why) for m in chosen if (why := _check(m, first))]
        roots.put(first)
        for m, why in problems:
            print(f"cannot apply {m.id}: {why}", file=sys.stderr)
        if problems:
            return 2
        done = 0
        lock = threading.Lock()

        def one(m: Mutant) -> None:
            nonlocal done
            if m.equivalent:
                outcome, elapsed = "equivalent", 0.0
            else:
                root = roots.get()
                try:
                    outcome, elapsed = _run(m, root, python)
                finally:
                    roots.put(root)
            with lock:
                done += 1
                results[m.module].append((m, outcome))
                print(f"[{done:3}/{len(chosen)}] {outcome.upper():10} {m.id:40} {m.what} "
                      f"({elapsed:.1f}s)", flush=True)

        with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
            list(pool.map(one, chosen))

    print()
    print(f"{'module':28} {'killed':>6} {'survived':>8} {'equiv':>5} {'score':>6}")
    total: Counter[str] = Counter()
    for module in sorted(results):
        c = Counter(o if o in ("killed", "survived", "equivalent") else "error"
                    for _, o in results[module])
        total.update(c)
        print(f"{module:28} {c['killed']:6} {c['survived']:8} {c['equivalent']:5} "
              f"{_score(c):>6}")
    print(f"{'total':28} {total['killed']:6} {total['survived']:8} {total['equivalent']:5} "
          f"{_score(total):>6}")
    survivors = [(m, o) for rs in results.values() for m, o in rs
                 if o not in ("killed", "equivalent")]
    for m, o in survivors:
        print(f"{o}: {m.id} ({m.path}): {m.what}")
    for m in chosen:
        if m.equivalent:
            print(f"equivalent: {m.id}: {m.equivalent}")
    print(f"killed {total['killed']}, survived {total['survived']}, "
          f"errors {total['error']}, score {_score(total)}")
    return 0 if not survivors else 1


def _score(c: Counter[str]) -> str:
    run = c["killed"] + c["survived"] + c["error"]
    return f"{100 * c['killed'] / run:.0f}%" if run else "-"


if __name__ == "__main__":
    sys.exit(main())
