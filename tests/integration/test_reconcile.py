"""Plan and apply against a real database, with small test providers."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from pathlib import Path

import asyncpg
import pytest

from daemon.config import DesiredState, load_config
from daemon.config.testing import SmallPlugin
from daemon.plugins import Plugins, load_plugins
from daemon.reconcile import (
    ApplyRefused,
    apply_desired,
    fetch_actual,
    make_plan,
    plan_from_database,
)

VENUE_A = "6f1c2a9e-0b7d-4c1e-9a55-3f2d8b7c1a01"
VENUE_B = "0d5e7c7a-2a8e-4f55-8f0c-2a1b3c4d5e6f"
VENUE_C = "9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d"

COMEDY_TEMPLATE = """\
name: comedy
provider: testprov
venue_type: comedy_club
mappings:
  product:
    title: event.name
    price: event.price
  customer:
    email: {from: customer.email, transforms: [lowercase]}
    first: customer.first_name
"""


def venue_yaml(venue_id: str, name: str, *, cron: str = "*/15 * * * *",
               oauth: bool = True) -> str:
    text = f"""\
venue:
  id: {venue_id}
  name: {name}
  timezone: Europe/London
integrations:
  - provider: testprov
    credentials:
      api_key: env:TESTPROV_KEY
    schedules:
      product: {{cron: "{cron}", lane: HIGH}}
      customer: {{cron: "0 * * * *", direction: both}}
    options:
      list_id: list-1
"""
    if oauth:
        text += """\
  - provider: testoauth
    credentials: oauth
    schedules:
      customer: {cron: "0 3 * * *", lane: LOW}
"""
    return text


@pytest.fixture
def plugins() -> Plugins:
    return load_plugins([], extra=[("testprov", SmallPlugin())])


@pytest.fixture
def config(tmp_path: Path) -> Path:
    root = tmp_path / "config"
    (root / "venues").mkdir(parents=True)
    (root / "templates").mkdir()
    (root / "templates" / "comedy.yaml").write_text(COMEDY_TEMPLATE)
    (root / "venues" / "a.yaml").write_text(venue_yaml(VENUE_A, "The Laugh Cellar"))
    (root / "venues" / "b.yaml").write_text(venue_yaml(VENUE_B, "Riverside Music Hall"))
    (root / "venues" / "c.yaml").write_text(venue_yaml(VENUE_C, "Old Town Theatre"))
    return root


Load = Callable[[], DesiredState]


@pytest.fixture
def load(config: Path, plugins: Plugins) -> Load:
    return lambda: load_config(config, plugins)


async def plan_of(conn: asyncpg.Connection, desired: DesiredState, *, prune: bool = False
                  ) -> list[tuple[str, str, str]]:
    plan = make_plan(desired, await fetch_actual(conn), prune=prune)
    return [(c.kind, c.action, c.key) for c in plan.changes]


async def test_fresh_database_plans_creates_then_apply_then_nothing(
        conn: asyncpg.Connection, load: Load) -> None:
    desired = load()
    planned = await plan_of(conn, desired)
    assert sum(1 for k, a, _ in planned if k == "integration" and a == "create") == 6
    assert {key for k, _, key in planned if k == "template"} == {
        "testprov/comedy", "testprov/testprov-default", "testoauth/testoauth-default"}

    result = await apply_desired(conn, desired, commit="abc123")
    assert result.revision_id is not None
    assert result.integration_rows_written == 6
    assert await plan_of(conn, load()) == []

    again = await apply_desired(conn, load())
    assert again.revision_id is None  # idempotent: nothing written, no new revision
    rev = await conn.fetchrow("SELECT * FROM config_revisions")
    assert rev["created"] == 9
    assert rev["git_commit"] == "abc123"
    assert rev["content_hash"] == desired.content_hash
    assert await conn.fetchval("SELECT count(*) FROM config_revisions") == 1


async def test_rows_hold_the_resolved_spec(conn: asyncpg.Connection, load: Load) -> None:
    await apply_desired(conn, load())
    row = await conn.fetchrow(
        "SELECT c.*, t.name AS template_name, t.usage_count FROM integration_configs c "
        "JOIN field_mapping_templates t ON t.id = c.template_id "
        "WHERE venue_id = $1 AND c.provider = 'testprov'", uuid.UUID(VENUE_A))
    assert row["venue_type"] == "comedy_club"  # detected from "Laugh"
    assert row["template_name"] == "comedy"  # chosen for the venue type
    assert row["timezone"] == "Europe/London"
    assert row["credentials"] == {"api_key": "env:TESTPROV_KEY"}
    assert row["schedules"]["product"] == {"cron": "*/15 * * * *", "lane": "HIGH",
                                           "direction": "push"}
    assert row["field_mappings"] == {}  # no overrides: the template applies as it is
    mappings = await conn.fetchval(
        "SELECT mappings FROM field_mapping_templates WHERE name = 'comedy'")
    assert mappings["customer"]["email"] == {"from": "customer.email",
                                             "transforms": [{"name": "lowercase"}]}
    assert row["options"] == {"list_id": "list-1", "batch_limit": 50}
    assert row["usage_count"] == 1
    other = await conn.fetchval(
        "SELECT t.name FROM integration_configs c JOIN field_mapping_templates t "
        "ON t.id = c.template_id WHERE venue_id = $1 AND c.provider = 'testprov'",
        uuid.UUID(VENUE_B))
    assert other == "testprov-default"  # no music template: the provider's default
    default_uses = await conn.fetchval(
        "SELECT usage_count FROM field_mapping_templates WHERE name = 'testprov-default'")
    assert default_uses == 2


async def test_editing_one_schedule_updates_one_integration(
        conn: asyncpg.Connection, load: Load, config: Path) -> None:
    first = await apply_desired(conn, load())
    (config / "venues" / "b.yaml").write_text(
        venue_yaml(VENUE_B, "Riverside Music Hall", cron="*/5 * * * *"))
    desired = load()
    plan = make_plan(desired, await fetch_actual(conn))
    assert [(c.action, c.key) for c in plan.changes] == [("update", f"{VENUE_B}/testprov")]
    (change,) = plan.changes
    assert [(f.field, f.before, f.after) for f in change.fields] == [
        ("schedules.product.cron", "*/15 * * * *", "*/5 * * * *")]
    assert not change.drift
    result = await apply_desired(conn, desired)
    assert result.integration_rows_written == 1
    revs = await conn.fetch("SELECT config_revision_id, count(*) FROM integration_configs "
                            "GROUP BY 1 ORDER BY 1")
    assert [(r[0], r[1]) for r in revs] == [(first.revision_id, 5), (result.revision_id, 1)]


async def test_drift_in_the_database_is_shown_and_put_back(
        conn: asyncpg.Connection, load: Load) -> None:
    await apply_desired(conn, load())
    await conn.execute(
        "UPDATE integration_configs SET schedules = jsonb_set(schedules, "
        "'{customer,lane}', '\"CRITICAL\"'), enabled = false "
        "WHERE venue_id = $1 AND provider = 'testoauth'", uuid.UUID(VENUE_C))
    plan = make_plan(load(), await fetch_actual(conn))
    (change,) = plan.changes
    assert change.action == "update"
    assert change.drift
    assert {(f.field, f.before, f.after) for f in change.fields} == {
        ("enabled", False, True), ("schedules.customer.lane", "CRITICAL", "LOW")}
    await apply_desired(conn, load())
    assert await plan_of(conn, load()) == []


async def test_missing_venue_is_disabled_tokens_kept_and_pruned_only_on_request(
        conn: asyncpg.Connection, load: Load, config: Path) -> None:
    await apply_desired(conn, load())
    await conn.execute(
        "INSERT INTO oauth_tokens (venue_id, provider, encrypted_access_token, "
        "encryption_key_version) VALUES ($1, 'testoauth', '\\x00', 1)", uuid.UUID(VENUE_A))
    (config / "venues" / "a.yaml").unlink()
    assert sorted(await plan_of(conn, load())) == [
        ("integration", "disable", f"{VENUE_A}/testoauth"),
        ("integration", "disable", f"{VENUE_A}/testprov")]
    result = await apply_desired(conn, load())
    assert result.plan.counts()["disable"] == 2
    rows = await conn.fetch("SELECT provider, enabled FROM integration_configs "
                            "WHERE venue_id = $1", uuid.UUID(VENUE_A))
    assert {(r["provider"], r["enabled"]) for r in rows} == {("testprov", False),
                                                              ("testoauth", False)}
    assert await conn.fetchval("SELECT count(*) FROM oauth_tokens") == 1
    assert await plan_of(conn, load()) == []  # disabled stays disabled: no churn
    assert len(await plan_of(conn, load(), prune=True)) == 2
    await apply_desired(conn, load(), prune=True)
    assert await conn.fetchval("SELECT count(*) FROM integration_configs "
                               "WHERE venue_id = $1", uuid.UUID(VENUE_A)) == 0


async def test_tombstone_disables_without_counting_against_the_guard(
        conn: asyncpg.Connection, load: Load, config: Path) -> None:
    await apply_desired(conn, load())
    text = venue_yaml(VENUE_A, "The Laugh Cellar", oauth=False)
    text += "  - provider: testoauth\n    removed: true\n"
    (config / "venues" / "a.yaml").write_text(text)
    plan = make_plan(load(), await fetch_actual(conn))
    (change,) = plan.changes
    assert (change.action, change.reason, change.switches_off) == (
        "disable", "removed: true", False)


async def test_refuses_to_switch_off_everything_or_too_many(
        conn: asyncpg.Connection, load: Load, config: Path) -> None:
    await apply_desired(conn, load())
    for f in (config / "venues").iterdir():
        f.unlink()
    with pytest.raises(ApplyRefused, match="all 6"):
        await apply_desired(conn, load())
    (config / "venues" / "c.yaml").write_text(venue_yaml(VENUE_C, "Old Town Theatre"))
    with pytest.raises(ApplyRefused, match="4 of 6"):
        await apply_desired(conn, load(), max_disable_share=0.5)
    assert await conn.fetchval(
        "SELECT count(*) FROM integration_configs WHERE enabled") == 6  # nothing applied
    await apply_desired(conn, load(), max_disable_share=0.7)
    assert await conn.fetchval(
        "SELECT count(*) FROM integration_configs WHERE enabled") == 2
    (config / "venues" / "c.yaml").unlink()
    await apply_desired(conn, load(), force=True)
    assert await conn.fetchval(
        "SELECT count(*) FROM integration_configs WHERE enabled") == 0


async def test_rows_managed_by_the_api_are_left_alone(
        conn: asyncpg.Connection, load: Load) -> None:
    await conn.execute(
        "INSERT INTO integration_configs (venue_id, provider, managed_by) "
        "VALUES ($1, 'testprov', 'api')", uuid.uuid4())
    await apply_desired(conn, load())
    assert await plan_of(conn, load(), prune=True) == []
    assert await conn.fetchval(
        "SELECT count(*) FROM integration_configs WHERE managed_by = 'api' AND enabled") == 1


async def test_templates_disabled_when_gone_and_default_moves(
        conn: asyncpg.Connection, load: Load, config: Path) -> None:
    await apply_desired(conn, load())
    (config / "templates" / "comedy.yaml").write_text(
        COMEDY_TEMPLATE.replace("venue_type: comedy_club\n", "default: true\n"))
    plan = make_plan(load(), await fetch_actual(conn))
    kinds = {(c.kind, c.action, c.key) for c in plan.changes}
    assert ("template", "update", "testprov/comedy") in kinds
    assert ("template", "update", "testprov/testprov-default") in kinds
    await apply_desired(conn, load())  # one default per provider holds throughout
    defaults = await conn.fetch("SELECT name FROM field_mapping_templates "
                                "WHERE provider = 'testprov' AND is_default")
    assert [r["name"] for r in defaults] == ["comedy"]
    assert await plan_of(conn, load()) == []


async def test_concurrent_applies_are_serialised(pool: asyncpg.Pool, load: Load) -> None:
    desired = load()

    async def once() -> int | None:
        async with pool.acquire() as c:
            return (await apply_desired(c, desired)).revision_id

    results = await asyncio.gather(once(), once(), once())
    assert sum(1 for r in results if r is not None) == 1
    async with pool.acquire() as c:
        assert await c.fetchval("SELECT count(*) FROM integration_configs") == 6


async def test_a_failure_mid_apply_leaves_nothing_behind(
        conn: asyncpg.Connection, load: Load, config: Path) -> None:
    await apply_desired(conn, load())
    (config / "venues" / "b.yaml").write_text(
        venue_yaml(VENUE_B, "Riverside Music Hall", cron="*/5 * * * *"))
    (config / "venues" / "d.yaml").write_text(
        venue_yaml("1d2c3b4a-5e6f-4a7b-8c9d-0e1f2a3b4c5d", "Late Addition"))
    await conn.execute("""
        CREATE FUNCTION refuse_late() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
          IF NEW.venue_name = 'Late Addition' THEN RAISE EXCEPTION 'refused by test'; END IF;
          RETURN NEW;
        END $$;
        CREATE TRIGGER refuse_late BEFORE INSERT ON integration_configs
          FOR EACH ROW EXECUTE FUNCTION refuse_late();
    """)
    with pytest.raises(asyncpg.RaiseError, match="refused by test"):
        await apply_desired(conn, load())
    assert await conn.fetchval("SELECT count(*) FROM config_revisions") == 1
    assert await conn.fetchval(
        "SELECT schedules->'product'->>'cron' FROM integration_configs "
        "WHERE venue_id = $1 AND provider = 'testprov'", uuid.UUID(VENUE_B)) == "*/15 * * * *"
    assert await conn.fetchval("SELECT count(*) FROM integration_configs") == 6


@pytest.mark.parametrize("page_size", [1, 2, 5, 2000])
async def test_a_plan_read_a_page_at_a_time_is_the_plan_of_every_row(
        conn: asyncpg.Connection, load: Load, config: Path, page_size: int) -> None:
    await apply_desired(conn, load())
    # drift in one row, a venue gone, a schedule edited, a row the API manages
    await conn.execute("UPDATE integration_configs SET enabled = false "
                       "WHERE venue_id = $1 AND provider = 'testoauth'", uuid.UUID(VENUE_C))
    (config / "venues" / "a.yaml").unlink()
    (config / "venues" / "b.yaml").write_text(
        venue_yaml(VENUE_B, "Riverside Music Hall", cron="*/5 * * * *"))
    await conn.execute(
        "INSERT INTO integration_configs (venue_id, provider, venue_name, managed_by) "
        "VALUES ($1, 'elsewhere', 'API venue', 'api')", uuid.uuid4())
    desired = load()
    whole = make_plan(desired, await fetch_actual(conn))
    paged = await plan_from_database(conn, desired, page_size=page_size)
    assert [c.as_dict() for c in paged.changes] == [c.as_dict() for c in whole.changes]
    assert (paged.unchanged, paged.managed_enabled) == (whole.unchanged, whole.managed_enabled)
    assert [c.action for c in paged.changes if c.kind == "integration"] == [
        "update", "update", "disable", "disable"]
