"""syncd's command line on a fresh machine: help, plugins, migrate, bad input."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import asyncpg
import pytest

from daemon.migrate import load_migrations
from tests.acceptance.conftest import SYNCD, Run

ROOT = Path(__file__).resolve().parents[2]


def test_help_lists_commands(syncd: Run) -> None:
    out = syncd("--help")
    assert out.returncode == 0
    for command in ("migrate", "plugins"):
        assert command in out.stdout


def test_plugins_lists_the_four_providers(syncd: Run) -> None:
    out = syncd("plugins")
    assert out.returncode == 0, out.stderr
    for name in ("square", "stripe", "mailchimp", "quickbooks"):
        assert name in out.stdout
    data = json.loads(syncd("plugins", "--json").stdout)
    assert {p["name"] for p in data["plugins"]} >= {"square", "stripe", "mailchimp", "quickbooks"}
    assert data["failed"] == []


def test_migrate_twice_second_is_a_no_op(syncd: Run, empty_db_url: str) -> None:
    env = {"SYNCD_DATABASE_URL": empty_db_url}
    first = syncd("migrate", env=env)
    assert first.returncode == 0, first.stderr
    assert "applied 0001_initial.sql" in first.stdout
    second = syncd("migrate", env=env)
    assert second.returncode == 0, second.stderr
    assert second.stdout.strip() == "database is up to date"
    status = json.loads(syncd("migrate", "--status", "--json", env=env).stdout)
    assert {s["state"] for s in status} == {"applied"}


def test_three_concurrent_migrates_apply_each_file_once(
    empty_db_url: str, tmp_path: Path
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SYNCD_")}
    env |= {"SYNCD_DATABASE_URL": empty_db_url, "SYNCD_LOG_FORMAT": "json"}
    procs = [subprocess.Popen([SYNCD, "migrate"], env=env, cwd=tmp_path, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE) for _ in range(3)]
    outs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0], outs
    applied_lines = [
        line for out, _ in outs for line in out.splitlines() if line.startswith("applied")
    ]
    assert len(applied_lines) == len(load_migrations())

    async def count() -> int:
        conn = await asyncpg.connect(empty_db_url)
        try:
            return int(await conn.fetchval("SELECT count(*) FROM schema_migrations"))
        finally:
            await conn.close()

    assert asyncio.run(count()) == len(load_migrations())


@pytest.mark.parametrize(
    ("url", "where"),
    [
        ("postgresql://postgres:hunter2@127.0.0.1:1/syncd", "127.0.0.1:1/syncd"),
        ("postgresql://postgres:hunter2@127.0.0.1:5432/no_such_database_here",
         "127.0.0.1:5432/no_such_database_here"),
        ("postgresql://postgres:hunter2@no-such-host.invalid:5432/db",
         "no-such-host.invalid:5432/db"),
    ],
)
def test_unreachable_database_is_one_clear_line(syncd: Run, url: str, where: str) -> None:
    out = syncd("migrate", env={"SYNCD_DATABASE_URL": url, "SYNCD_DB_CONNECT_TIMEOUT": "5"})
    assert out.returncode == 1
    errors = [line for line in out.stderr.splitlines() if line.startswith("syncd: error:")]
    assert len(errors) == 1, out.stderr
    assert where in errors[0]
    assert "hunter2" not in out.stderr + out.stdout
    assert "Traceback" not in out.stderr


def test_migrate_on_embedded_postgres_with_no_url(syncd: Run, tmp_path: Path) -> None:
    env = {"SYNCD_DATA_DIR": str(tmp_path / "embedded")}
    first = syncd("migrate", env=env, timeout=300)
    assert first.returncode == 0, first.stderr
    assert "applied 0001_initial.sql" in first.stdout
    events = [json.loads(line) for line in first.stderr.splitlines() if line.startswith("{")]
    assert any(e["event"] == "db.using" and e["kind"] == "embedded" for e in events)
    again = syncd("migrate", env=env, timeout=300)
    assert again.returncode == 0, again.stderr
    assert again.stdout.strip() == "database is up to date"


def test_third_party_plugin_is_listed_with_no_change_to_syncd(
    syncd: Run, tmp_path: Path
) -> None:
    target = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
         "--target", str(target), str(ROOT / "tests" / "fixtures" / "syncd-example-plugin")],
        check=True, capture_output=True, timeout=300,
    )
    env = {"PYTHONPATH": str(target)}
    data = json.loads(syncd("plugins", "--json", env=env).stdout)
    example = next(p for p in data["plugins"] if p["name"] == "example")
    assert example["version"] == "1.2.3"
    assert example["distribution"] == "syncd-example-plugin"
    assert example["providers"] == ["example"]
    assert set(example["hooks"]) == {"syncd_register_providers", "syncd_register_commands"}
    hello = syncd("example-hello", "world", env=env)
    assert hello.returncode == 0, hello.stderr
    assert hello.stdout.strip() == "hello from the example plugin, world"
    only = json.loads(syncd("plugins", "--json", env={**env, "SYNCD_PLUGINS": "stripe"}).stdout)
    assert [p["name"] for p in only["plugins"]] == ["stripe"]
