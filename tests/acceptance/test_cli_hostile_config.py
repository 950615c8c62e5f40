"""Hostile config files: `syncd validate` and `syncd apply --watch` meet them as an operator.

Each file is small on disk and expensive to load (aliases expanding to hundreds of millions
of values, nesting thousands deep, an alias inside itself, a huge file) or names secrets
outside the credential scope. Each must be one located problem, never a traceback, and a
running watcher must keep the revision in force and keep running. The subprocesses run under
an address-space limit so that a regression fails the test instead of the machine.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path

import asyncpg
import pytest

SYNCD = str(Path(sys.executable).parent / "syncd")
MEMORY_LIMIT = 2 * 1024**3
VID = "27f3c8d1-94b5-4e0a-b6c2-e1d8f7a9c350"


def venue(cron: str = "0 */6 * * *", api_key: str = "env:VENUE_BLUE_DOOR_KEY") -> str:
    return (f"venue:\n  id: {VID}\n  name: The Blue Door\n  timezone: America/Los_Angeles\n"
            "integrations:\n  - provider: mailchimp\n    credentials:\n"
            f"      api_key: {api_key}\n    schedules:\n"
            f'      customer: {{cron: "{cron}", lane: LOW, direction: push}}\n'
            "    options:\n      list_id: 0b1c2d3e4f\n      store_id: blue-door\n")


def alias_bomb() -> str:
    """Nine levels of nine aliases: about 400 bytes, 387 million values expanded."""
    lines = [f"venue: {{id: {VID}, name: Bomb}}",
             'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for prev, cur in zip("abcdefgh", "bcdefghi", strict=True):
        lines.append(f"{cur}: &{cur} [" + ",".join([f"*{prev}"] * 9) + "]")
    return "\n".join(lines) + "\n"


def deep() -> str:
    return "venue: " + "[" * 3000 + "]" * 3000 + "\n"


def limited(*args: str) -> list[str]:
    """``syncd ARGS`` under an address-space limit (``ulimit -v``, in KiB)."""
    return ["sh", "-c", f'ulimit -v {MEMORY_LIMIT // 1024} && exec "$0" "$@"', SYNCD, *args]


def clean_env(tmp_path: Path, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items()
            if not k.startswith("SYNCD_") and k != "DATABASE_URL"}
    base["SYNCD_DATA_DIR"] = str(tmp_path / "pgdata")
    base["SYNCD_LOG_FORMAT"] = "json"
    return {**base, **(extra or {})}


def validate(tmp_path: Path, config: Path, env: Mapping[str, str] | None = None
             ) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        limited("validate", "--config", str(config)), env=clean_env(tmp_path, env),
        capture_output=True, text=True, timeout=120, cwd=tmp_path, check=False)


def config_with(tmp_path: Path, text: str) -> Path:
    root = tmp_path / "config"
    (root / "venues").mkdir(parents=True, exist_ok=True)
    (root / "venues" / "blue-door.yaml").write_text(text)
    return root


@pytest.mark.parametrize(("text", "where", "message"), [
    (alias_bomb(), r"\d+:\d+", "once aliases are expanded"),
    (deep(), r"1:\d+", "nested more than 64 levels deep"),
    ("venue: &v {id: *v}\n", r"1:\d+", "an alias refers to a node that contains it"),
    (venue() + "#" * 2_000_000 + "\n", "1:1", "larger than 1048576 bytes"),
], ids=["alias-bomb", "deep-nesting", "self-alias", "oversized"])
def test_validate_reports_a_hostile_file_as_one_located_problem(
        tmp_path: Path, text: str, where: str, message: str) -> None:
    config = config_with(tmp_path, text)
    done = validate(tmp_path, config)
    assert "Traceback" not in done.stderr, done.stderr[-2000:]
    assert done.returncode == 1, done.stderr[-2000:]
    lines = done.stderr.strip().splitlines()
    assert re.match(rf"^{re.escape(str(config))}/venues/blue-door\.yaml:{where}: .*{message}"
                    r".*\(hint: .+\)$", lines[0]), lines
    assert lines[-1] == "config is invalid: 1 problem; nothing applied"


def test_validate_reports_credential_references_outside_the_scope(tmp_path: Path) -> None:
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    (secrets / "escape").symlink_to("/etc/hostname")
    refs = ["env:SYNCD_DATABASE_URL", "env:HOME", "file:/proc/self/environ",
            f"file:{secrets}/../../etc/passwd", f"file:{secrets}/escape", "file:/dev/zero"]
    root = tmp_path / "config"
    (root / "venues").mkdir(parents=True)
    for i, ref in enumerate(refs):
        text = venue(api_key=ref).replace(VID, f"27f3c8d1-94b5-4e0a-b6c2-e1d8f7a9c35{i}")
        (root / "venues" / f"v{i}.yaml").write_text(text)
    env = {"SYNCD_SECRETS_DIR": str(secrets)}
    done = validate(tmp_path, root, env)
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr
    for i, ref in enumerate(refs):
        line = next((x for x in done.stderr.splitlines() if f"/v{i}.yaml:" in x), "")
        assert re.search(r"\.yaml:8:16: integrations\[0\]\.credentials\.api_key: credential "
                         r"'api_key' is out of scope: .* \(hint: use env:NAME .*\)$", line), (
            ref, done.stderr)

    # Inside the scope, the same layout is valid (the secret need not exist yet).
    for i, ref in enumerate(["env:VENUE_BLUE_DOOR_KEY", f"file:{secrets}/blue-door-key",
                             "file:blue-door-key"]):
        (root / "venues" / f"v{i}.yaml").write_text(
            venue(api_key=ref).replace(VID, f"27f3c8d1-94b5-4e0a-b6c2-e1d8f7a9c35{i}"))
    for i in range(3, len(refs)):
        (root / "venues" / f"v{i}.yaml").unlink()
    ok = validate(tmp_path, root, env)
    assert ok.returncode == 0, ok.stderr


async def _cron(db_url: str) -> str | None:
    conn = await asyncpg.connect(db_url)
    try:
        value = await conn.fetchval(
            "SELECT schedules->'customer'->>'cron' FROM integration_configs")
        return str(value) if value is not None else None
    finally:
        await conn.close()


def _wait(check: Callable[[], bool], proc: subprocess.Popen[str], timeout: float = 60
          ) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert proc.poll() is None, f"apply --watch exited with {proc.returncode}"
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


def test_apply_watch_keeps_the_applied_revision_and_keeps_running(
        tmp_path: Path, db_url: str) -> None:
    config = config_with(tmp_path, venue("0 */6 * * *"))
    log = tmp_path / "watch.log"
    env = clean_env(tmp_path, {"SYNCD_DATABASE_URL": db_url,
                               "SYNCD_CONFIG_POLL_INTERVAL": "0.1"})
    with log.open("w") as err:
        proc = subprocess.Popen(limited("apply", "--watch", "--config", str(config)),
                                env=env, stdout=subprocess.DEVNULL, stderr=err, text=True,
                                cwd=tmp_path)
    try:
        _wait(lambda: asyncio.run(_cron(db_url)) == "0 */6 * * *", proc)
        venue_file = config / "venues" / "blue-door.yaml"
        for n, hostile in enumerate([deep(), alias_bomb()], start=1):
            venue_file.write_text(hostile)
            _wait(lambda n=n: log.read_text().count('"event": "config.invalid"') >= n, proc)
        assert asyncio.run(_cron(db_url)) == "0 */6 * * *"
        venue_file.write_text(venue("30 */2 * * *"))
        _wait(lambda: asyncio.run(_cron(db_url)) == "30 */2 * * *", proc)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    text = log.read_text()
    assert "Traceback" not in text
    assert "nested more than 64 levels deep" in text
    assert "once aliases are expanded" in text
