"""Scenario 7: corrupted variants of the example config meet a running config watcher."""

from __future__ import annotations

import asyncio
import json
import random
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import asyncpg

from bench.proving.daemon import ROOT, Daemon
from bench.proving.registry import Context, Result, scenario
from daemon.db import init_connection
from tests.acceptance.test_cli_hostile_config import alias_bomb, deep

EXAMPLE = ROOT / "config"
_TERMINAL = ('"config.reconciled"', '"config.invalid"', '"config.apply_refused"',
             '"config.apply_failed"')
_WRONG_VALUES = ["[1, 2]", "{a: 1}", "maybe", "-3", '""', "null", "0x1F", ".nan", "*nowhere",
                 "!!binary aGVsbG8=", "2024-05-01", "'", "[", "{", "|x"]
_INSERTS = [":", "[", "]", "{", "}", '"', "'", "&", "*", "!", "|", ">", "-", "#", "\t", "\n",
            "  ", "%", "@", "`", "? ", "- "]


def _mutate(rng: random.Random, text: str) -> tuple[str, str]:
    """One small change of one file: a character or a line inserted, deleted, repeated or
    indented; a value of the wrong type; a key misspelt; the file cut short."""
    lines = text.splitlines(keepends=True)
    kind = rng.choice(["insert", "delete_char", "delete_line", "repeat_line", "indent",
                       "wrong_type", "rename_key", "truncate"])
    at = rng.randrange(len(lines))
    line = lines[at]
    if kind == "insert":
        col = rng.randrange(len(line) + 1)
        lines[at] = line[:col] + rng.choice(_INSERTS) + line[col:]
    elif kind == "delete_char" and line.strip():
        col = rng.randrange(len(line))
        lines[at] = line[:col] + line[col + 1:]
    elif kind == "delete_line":
        del lines[at]
    elif kind == "repeat_line":
        lines.insert(at, line)
    elif kind == "indent":
        lines[at] = rng.choice([" ", "   ", "\t"]) + line
    elif kind in ("wrong_type", "rename_key"):
        keyed = [i for i, x in enumerate(lines) if ":" in x and not x.lstrip().startswith("#")]
        at = rng.choice(keyed)
        key, _, value = lines[at].partition(":")
        if kind == "wrong_type":
            lines[at] = f"{key}: {rng.choice(_WRONG_VALUES)}\n"
        else:
            lines[at] = f"{key}x:{value}"
    else:
        cut = rng.randrange(len(text))
        return kind, text[:cut]
    return kind, "".join(lines)


def variants(rng: random.Random, files: dict[str, str], count: int
             ) -> list[tuple[str, str, str | bytes]]:
    """``count`` corrupted variants: (kind, relative path, new content of that file)."""
    names = sorted(files)
    venues = [n for n in names if n.startswith("venues/")]
    hostile: list[tuple[str, Callable[[], str | bytes]]] = [
        ("alias_bomb", alias_bomb),
        ("deep_nesting", deep),
        ("huge_file", lambda: files[venues[0]] + "#" * 2_000_000 + "\n"),
        ("self_alias", lambda: "venue: &v {id: *v}\n"),
        ("not_utf8", lambda: b"venue:\n  name: caf\xe9 \xff\xfe\n"),
        ("binary", lambda: bytes(rng.randrange(256) for _ in range(400))),
        ("wrong_root", lambda: "- just\n- a list\n"),
        ("empty", lambda: ""),
    ]
    out: list[tuple[str, str, str | bytes]] = []
    for i in range(count):
        if i % 5 == 4:  # one in five is hostile
            kind, make = hostile[(i // 5) % len(hostile)]
            out.append((kind, rng.choice(venues), make()))
            continue
        name = rng.choice(names)
        kind, text = _mutate(rng, files[name])
        out.append((kind, name, text))
    return out


_SNAPSHOT = ("SELECT venue_id, provider, venue_name, venue_type, timezone, enabled, "
             "environment, credentials::text, schedules::text, field_mappings::text, "
             "options::text, template_id, spec_hash, config_revision_id "
             "FROM integration_configs ORDER BY venue_id, provider")


async def _snapshot(pool: asyncpg.Pool) -> tuple[Any, ...]:
    rows = await pool.fetch(_SNAPSHOT)
    revisions = await pool.fetchval("SELECT count(*) FROM config_revisions")
    return (tuple(tuple(r) for r in rows), revisions)


def _without_revision(snapshot: tuple[Any, ...]) -> tuple[Any, ...]:
    return tuple(row[:-1] for row in snapshot[0])


def _write(root: Path, name: str, content: str | bytes) -> None:
    """Replace a file in one step, so the watcher never reads it half written."""
    path = root / name
    tmp = path.with_name(f".{path.name}.tmp")
    if isinstance(content, bytes):
        tmp.write_bytes(content)
    else:
        tmp.write_text(content)
    tmp.replace(path)


class Watched:
    """The watcher's log, read as it reacts to each change."""

    def __init__(self, daemon: Daemon) -> None:
        self.daemon = daemon
        self.process = daemon.processes["config"]
        self.seen = 0

    async def reaction(self, timeout: float = 60) -> list[dict[str, Any]]:
        """The events of the watcher's next pass after a file change."""
        deadline = time.monotonic() + timeout
        while True:
            text = self.daemon.read_log(self.process)
            lines = text.splitlines()[self.seen:]
            events = [json.loads(x) for x in lines if x.startswith("{")]
            changed = [i for i, e in enumerate(events) if e.get("event") == "config.files_changed"]
            if changed:
                after = events[changed[0] + 1:]
                done = [e for e in after if f'"{e.get("event")}"' in _TERMINAL]
                if done:
                    await asyncio.sleep(0.1)  # the rest of a burst of problems
                    text = self.daemon.read_log(self.process)
                    lines = text.splitlines()[self.seen:]
                    events = [json.loads(x) for x in lines if x.startswith("{")]
                    self.seen += len(lines)
                    return events
            if not self.process.alive:
                raise RuntimeError(f"the config watcher exited: {text[-1500:]}")
            if time.monotonic() > deadline:
                raise TimeoutError("the config watcher did not react to a change")
            await asyncio.sleep(0.05)


@scenario(7, "corrupt-config", "corrupted variants of the example config (mutations, alias "
          "bombs, deep nesting, huge files, wrong types) under a running watcher: no partial "
          "apply, every error located, the last applied revision kept")
async def corrupt_config(ctx: Context) -> Result:
    rng = random.Random(ctx.seed)
    count = 30 if ctx.quick else 200
    result = Result("corrupt-config", fault_kinds="corrupt variants")
    db_url = await ctx.server.create_database()
    workdir = Path(tempfile.mkdtemp(prefix="syncd-prove-config-"))
    root = workdir / "config"
    shutil.copytree(EXAMPLE, root)
    files = {str(p.relative_to(root)): p.read_text() for p in sorted(root.rglob("*.yaml"))}
    pool = await asyncpg.create_pool(db_url, min_size=1, max_size=2, init=init_connection)
    assert pool is not None
    invalid = valid = refused = unlocated = partial = not_restored = 0
    kinds: dict[str, int] = {}
    try:
        daemon = Daemon(db_url, workdir / "logs", replicas=0, config_dir=root,
                        env={"SYNCD_CONFIG_POLL_INTERVAL": "0.1"})
        async with daemon:
            watched = Watched(daemon)
            watched.seen = len(daemon.read_log(watched.process).splitlines())
            applied = await _snapshot(pool)
            original = _without_revision(applied)
            for kind, name, content in variants(rng, files, count):
                if content == files[name]:
                    continue
                _write(root, name, content)
                events = await watched.reaction()
                problems = [e for e in events if e.get("event") == "config.invalid"]
                after = await _snapshot(pool)
                if problems or any(e.get("event") == "config.apply_refused" for e in events):
                    if problems:
                        invalid += 1
                    else:
                        refused += 1
                    kinds[kind] = kinds.get(kind, 0) + 1
                    if after != applied:
                        partial += 1
                        result.notes.append(f"{kind} of {name}: the applied state changed")
                    for problem in problems:
                        where = str(problem.get("file") or "")
                        if not (where.startswith(str(root)) and (problem.get("line") or 0) >= 1
                                and (problem.get("column") or 0) >= 1):
                            unlocated += 1
                            if unlocated <= 3:
                                result.notes.append(f"{kind} of {name}: not located: {problem}")
                else:
                    valid += 1
                _write(root, name, files[name])
                await watched.reaction()
                applied = await _snapshot(pool)
                if _without_revision(applied) != original:
                    not_restored += 1
                    result.notes.append(f"{kind} of {name}: the original did not apply again")
            alive = watched.process.alive
    finally:
        await pool.close()
        await ctx.server.drop_database(db_url)
    result.faults = invalid + refused
    hostile = {"alias_bomb", "deep_nesting", "huge_file", "self_alias", "not_utf8", "binary",
               "wrong_root", "empty"}
    result.fault_kinds = (f"refused: {sum(n for k, n in kinds.items() if k not in hostile)} "
                          f"mutations, {sum(n for k, n in kinds.items() if k in hostile)} "
                          "hostile files")
    result.notes.append("refused by kind: " + ", ".join(f"{n} {k}"
                                                        for k, n in sorted(kinds.items())))
    result.load = f"{count} variants of {len(files)} files"
    result.notes.append(f"{invalid} refused as invalid, {refused} refused by policy, "
                        f"{valid} valid (applied, then the original again)")
    return result.finish(
        (partial == 0, f"{partial} variants changed the applied state"),
        (unlocated == 0, f"{unlocated} problems without file:line:column"),
        (not_restored == 0, f"{not_restored} times the original did not apply again"),
        (alive, "the watcher stopped"),
        (invalid >= count // 2, f"only {invalid} of {count} variants were refused"),
    )
