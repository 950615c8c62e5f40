"""The config commands driven as an operator or a CI job would, with the shipped config."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import asyncpg
import pytest

from tests.acceptance.conftest import Run

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def config(tmp_path: Path) -> Path:
    target = tmp_path / "config"
    shutil.copytree(ROOT / "config", target)
    return target


def env_for(db_url: str) -> dict[str, str]:
    return {"SYNCD_DATABASE_URL": db_url}


async def count(db_url: str, sql: str) -> int:
    conn = await asyncpg.connect(db_url)
    try:
        return int(await conn.fetchval(sql))
    finally:
        await conn.close()


def test_validate_shipped_config(syncd: Run, config: Path) -> None:
    done = syncd("validate", "--config", str(config))
    assert done.returncode == 0, done.stderr
    assert "valid" in done.stdout
    as_json = json.loads(syncd("validate", "--config", str(config), "--json").stdout)
    assert as_json["valid"] is True
    assert as_json["venues"] >= 4


async def test_broken_copy_is_refused_with_locations_and_nothing_applied(
        syncd: Run, config: Path, db_url: str) -> None:
    venue = config / "venues" / "riverside-music-hall.yaml"
    text = venue.read_text()
    text = text.replace("api_key: env:VENUE_RIVERSIDE_STRIPE_KEY",
                        "api_key: sk_live_4eC39HqLyjWDarjtT1")
    text = text.replace('"*/10 * * * *"', '"*/10 * * *"')
    text = text.replace("provider: quickbooks", "provider: xero")
    venue.write_text(text)
    copied = (config / "venues" / "blue-door.yaml").read_text()
    (config / "venues" / "copy.yaml").write_text(
        copied.replace("integrations:", "extras: 1\nintegrations:"))

    done = syncd("apply", "--config", str(config), env=env_for(db_url))
    assert done.returncode == 1
    lines = done.stderr.splitlines()
    located = [ln for ln in lines if re.match(r"^\S+\.yaml:\d+:\d+: ", ln)]
    assert len(located) == 5, done.stderr
    assert any("riverside-music-hall.yaml:11:16: integrations[0].credentials.api_key" in ln
               for ln in located)
    assert any("integrations[0].schedules.product.cron: invalid cron" in ln for ln in located)
    assert any("unknown provider 'xero' (loaded providers: mailchimp, quickbooks, square, "
               "stripe)" in ln for ln in located)
    assert any("copy.yaml" in ln and "venue id" in ln and "blue-door.yaml" in ln
               for ln in located)
    assert any("copy.yaml" in ln and "unknown key 'extras'" in ln for ln in located)
    assert "sk_live_4eC39HqLyjWDarjtT1" not in done.stderr + done.stdout
    assert "nothing applied" in done.stderr
    assert await count(db_url, "SELECT count(*) FROM integration_configs") == 0
    assert await count(db_url, "SELECT count(*) FROM config_revisions") == 0
    assert syncd("validate", "--config", str(config)).returncode == 1
    assert syncd("plan", "--config", str(config), env=env_for(db_url)).returncode == 1


async def test_plan_apply_plan_then_one_schedule_edit(
        syncd: Run, config: Path, db_url: str) -> None:
    env = env_for(db_url)
    first = syncd("plan", "--config", str(config), env=env)
    assert first.returncode == 2, first.stderr
    assert "to create" in first.stdout

    applied = syncd("apply", "--config", str(config), env=env)
    assert applied.returncode == 0, applied.stderr
    assert "Applied revision" in applied.stdout
    integrations = await count(db_url, "SELECT count(*) FROM integration_configs")
    assert integrations == 9

    again = syncd("plan", "--config", str(config), env=env)
    assert again.returncode == 0, again.stdout
    assert "No changes" in again.stdout
    assert "Nothing to apply" in syncd("apply", "--config", str(config), env=env).stdout

    venue = config / "venues" / "old-town-theatre.yaml"
    venue.write_text(venue.read_text().replace('"*/30 * * * *"', '"*/20 * * * *"'))
    edited = syncd("plan", "--config", str(config), "--json", env=env)
    assert edited.returncode == 2
    plan = json.loads(edited.stdout)
    assert plan["counts"]["update"] == 1
    assert plan["counts"]["create"] == plan["counts"]["disable"] == 0
    (change,) = plan["changes"]
    assert change["key"].endswith("/quickbooks")
    assert change["fields"] == [{"field": "schedules.transaction.cron",
                                 "before": "*/30 * * * *", "after": "*/20 * * * *"}]
    assert syncd("apply", "--config", str(config), env=env).returncode == 0
    assert await count(db_url, "SELECT count(*) FROM config_revisions") == 2
    assert await count(db_url, "SELECT count(DISTINCT config_revision_id) "
                               "FROM integration_configs") == 2


async def test_removing_every_venue_needs_force(syncd: Run, config: Path, db_url: str) -> None:
    env = env_for(db_url)
    assert syncd("apply", "--config", str(config), env=env).returncode == 0
    for path in (config / "venues").iterdir():
        path.unlink()
    plan = syncd("plan", "--config", str(config), env=env)
    assert plan.returncode == 2
    assert "apply will refuse without --force" in plan.stdout
    refused = syncd("apply", "--config", str(config), env=env)
    assert refused.returncode == 1
    assert "refusing to apply" in refused.stderr
    assert await count(db_url, "SELECT count(*) FROM integration_configs WHERE enabled") == 8
    assert syncd("apply", "--config", str(config), "--force", env=env).returncode == 0
    assert await count(db_url, "SELECT count(*) FROM integration_configs WHERE enabled") == 0
    assert await count(db_url, "SELECT count(*) FROM integration_configs") == 9


def test_schema_prints_both_kinds(syncd: Run, tmp_path: Path) -> None:
    done = syncd("schema")
    assert done.returncode == 0
    schemas = json.loads(done.stdout)
    assert set(schemas) == {"venue", "template"}
    out = syncd("schema", "--out", str(tmp_path / "schemas"))
    assert out.returncode == 0
    assert json.loads((tmp_path / "schemas" / "venue.schema.json").read_text())["title"] == \
        "syncd venue file"


def test_config_dir_from_the_environment(syncd: Run, config: Path, tmp_path: Path) -> None:
    done = syncd("validate", env={"SYNCD_CONFIG_DIR": str(config)})
    assert done.returncode == 0, done.stderr
    missing = syncd("validate", "--config", str(tmp_path / "nope"))
    assert missing.returncode == 1
    assert "does not exist" in missing.stderr


def test_plan_on_an_unmigrated_database_shows_everything_new(
        syncd: Run, config: Path, empty_db_url: str) -> None:
    done = syncd("plan", "--config", str(config), env=env_for(empty_db_url))
    assert done.returncode == 2, done.stderr
    assert "not migrated yet" in done.stdout
    assert "0 unchanged" in done.stdout
