"""Venue files unchanged since the last apply are not read again, and plans stay exact."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import tempfile
import uuid
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from daemon.config import ConfigInvalid, ConfigProblem, DesiredState, load_config
from daemon.config.testing import SmallPlugin, SmallProvider
from daemon.credential_scope import CredentialScope
from daemon.db import init_connection
from daemon.plugins import Plugins, load_plugins
from daemon.provider import AuthKind
from daemon.reconcile import (
    apply_desired,
    fetch_actual,
    fetch_applied_files,
    load_against_database,
    make_plan,
    plan_from_database,
)
from daemon.reconcile.plan import Plan
from tests.integration.test_reconcile import (
    COMEDY_TEMPLATE,
    VENUE_A,
    VENUE_B,
    VENUE_C,
    venue_yaml,
)
from tests.integration.test_reconcile_properties import configs


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


def changes(plan: Plan) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = plan.as_dict()["changes"]
    return found


async def both_plans(conn: asyncpg.Connection, root: Path, plugins: Plugins, *,
                     scope: CredentialScope | None = None, prune: bool = False
                     ) -> tuple[DesiredState, list[dict[str, Any]]]:
    """The plan with files skipped, asserted equal to the plan of a full load."""
    desired = await load_against_database(conn, root, plugins, scope=scope)
    skipping = await plan_from_database(conn, desired, prune=prune)
    full = make_plan(load_config(root, plugins, scope=scope), await fetch_actual(conn),
                     prune=prune)
    assert changes(skipping) == changes(full)
    assert skipping.counts() == full.counts()
    return desired, changes(skipping)


def skipped(desired: DesiredState) -> list[str]:
    assert desired.sources is not None
    return sorted(Path(name).name for name in desired.sources.skipped)


async def test_unchanged_files_are_not_read_and_nothing_changes(
        conn: asyncpg.Connection, config: Path, plugins: Plugins) -> None:
    await apply_desired(conn, load_config(config, plugins))
    recorded = await fetch_applied_files(conn)
    assert recorded is not None
    assert sorted(recorded) == ["venues/a.yaml", "venues/b.yaml", "venues/c.yaml"]
    assert set(recorded["venues/a.yaml"].rows) == {"testprov", "testoauth"}

    desired, planned = await both_plans(conn, config, plugins)
    assert planned == []
    assert skipped(desired) == ["a.yaml", "b.yaml", "c.yaml"]
    assert desired.integrations == ()  # known by digest only
    plan = await plan_from_database(conn, desired)
    assert plan.expanded == frozenset()  # every row matched its recorded digest
    assert plan.counts()["unchanged"] == 9

    # Touched without a change (a checkout rewrites it): still not read.
    text = (config / "venues" / "b.yaml").read_bytes()
    (config / "venues" / "b.yaml").write_bytes(text)
    os.utime(config / "venues" / "b.yaml", (1, 1))
    desired, planned = await both_plans(conn, config, plugins)
    assert planned == []
    assert skipped(desired) == ["a.yaml", "b.yaml", "c.yaml"]


async def test_one_changed_file_is_read_and_recorded_again(
        conn: asyncpg.Connection, config: Path, plugins: Plugins) -> None:
    await apply_desired(conn, load_config(config, plugins))
    (config / "venues" / "b.yaml").write_text(
        venue_yaml(VENUE_B, "Riverside Music Hall", cron="*/5 * * * *"))
    desired, planned = await both_plans(conn, config, plugins)
    assert skipped(desired) == ["a.yaml", "c.yaml"]
    assert [(c["action"], c["key"]) for c in planned] == [("update", f"{VENUE_B}/testprov")]
    before = (await fetch_applied_files(conn) or {})["venues/b.yaml"]

    result = await apply_desired(conn, desired)
    assert result.integration_rows_written == 1
    after = (await fetch_applied_files(conn) or {})["venues/b.yaml"]
    assert after.digest != before.digest
    assert after.rows["testprov"] != before.rows["testprov"]
    assert after.rows["testoauth"] == before.rows["testoauth"]
    desired, planned = await both_plans(conn, config, plugins)
    assert planned == []
    assert skipped(desired) == ["a.yaml", "b.yaml", "c.yaml"]


async def test_drift_on_a_skipped_file_is_shown_field_by_field_and_put_back(
        conn: asyncpg.Connection, config: Path, plugins: Plugins) -> None:
    await apply_desired(conn, load_config(config, plugins))
    await conn.execute(
        "UPDATE integration_configs SET schedules = jsonb_set(schedules, "
        "'{customer,lane}', '\"CRITICAL\"') WHERE venue_id = $1 AND provider = 'testoauth'",
        uuid.UUID(VENUE_C))
    desired, planned = await both_plans(conn, config, plugins)
    assert skipped(desired) == ["a.yaml", "b.yaml", "c.yaml"]
    (change,) = planned
    assert change["action"] == "update"
    assert change["drift"] is True
    assert change["fields"] == [
        {"field": "schedules.customer.lane", "before": "CRITICAL", "after": "LOW"}]
    plan = await plan_from_database(conn, desired)
    assert {Path(n).name for n in plan.expanded} == {"c.yaml"}

    await apply_desired(conn, desired)
    desired, planned = await both_plans(conn, config, plugins)
    assert planned == []
    assert (await plan_from_database(conn, desired)).expanded == frozenset()


async def test_a_row_deleted_in_the_database_is_created_again(
        conn: asyncpg.Connection, config: Path, plugins: Plugins) -> None:
    await apply_desired(conn, load_config(config, plugins))
    await conn.execute("DELETE FROM integration_configs WHERE venue_id = $1 AND "
                       "provider = 'testprov'", uuid.UUID(VENUE_A))
    desired, planned = await both_plans(conn, config, plugins)
    assert [(c["action"], c["key"]) for c in planned] == [("create", f"{VENUE_A}/testprov")]
    result = await apply_desired(conn, desired)
    assert result.integration_rows_written == 1
    _, planned = await both_plans(conn, config, plugins)
    assert planned == []


async def test_a_template_edit_reads_every_file_and_reports_their_problems(
        conn: asyncpg.Connection, config: Path, plugins: Plugins) -> None:
    await apply_desired(conn, load_config(config, plugins))
    template = config / "templates" / "comedy.yaml"
    template.write_text(COMEDY_TEMPLATE.replace("title: event.name", "title: event.description"))
    desired, planned = await both_plans(conn, config, plugins)
    assert skipped(desired) == []
    assert [c["key"] for c in planned] == ["testprov/comedy"]

    # A rule the unchanged venue a.yaml (a comedy club) breaks: reported there, located.
    template.write_text(COMEDY_TEMPLATE + "validation_rules:\n  customer:\n"
                        "    required: [last]\n")
    applied = await fetch_applied_files(conn)
    with pytest.raises(ConfigInvalid) as skipping:
        load_config(config, plugins, applied=applied)
    with pytest.raises(ConfigInvalid) as full:
        load_config(config, plugins)
    assert [str(p) for p in skipping.value.problems] == [str(p) for p in full.value.problems]
    assert any(Path(p.file).name == "a.yaml" and "requires 'last'" in p.message
               for p in skipping.value.problems)


async def test_other_plugins_read_every_file(
        conn: asyncpg.Connection, config: Path, plugins: Plugins) -> None:
    await apply_desired(conn, load_config(config, plugins))
    # The same providers, one with another capability: the checks may differ.
    changed = SmallProvider("testoauth", AuthKind.OAUTH)
    changed.capabilities = dataclasses.replace(changed.capabilities, credential_keys=("x",))
    other = load_plugins([], extra=[("testprov", SmallPlugin(SmallProvider(), changed))])
    desired, _ = await both_plans(conn, config, other)
    assert skipped(desired) == []
    # A plugin of another version, the same providers.
    newer = load_plugins([], extra=[("testprov", SmallPlugin())])
    info = newer.loaded[0]
    newer.loaded[0] = type(info)(info.name, info.module, "syncd-testprov", "2.0",
                                 info.hooks, info.providers)
    desired, _ = await both_plans(conn, config, newer)
    assert skipped(desired) == []
    # Another credential scope.
    desired, _ = await both_plans(conn, config, plugins,
                                  scope=CredentialScope(env_prefixes=("TESTPROV_",)))
    assert skipped(desired) == []
    desired, _ = await both_plans(conn, config, plugins)
    assert skipped(desired) == ["a.yaml", "b.yaml", "c.yaml"]


async def test_renamed_and_deleted_files(
        conn: asyncpg.Connection, config: Path, plugins: Plugins) -> None:
    await apply_desired(conn, load_config(config, plugins))
    (config / "venues" / "b.yaml").rename(config / "venues" / "b-renamed.yaml")
    (config / "venues" / "c.yaml").unlink()
    desired, planned = await both_plans(conn, config, plugins)
    assert skipped(desired) == ["a.yaml"]
    assert sorted((c["action"], c["key"]) for c in planned) == [
        ("disable", f"{VENUE_C}/testoauth"), ("disable", f"{VENUE_C}/testprov")]
    await apply_desired(conn, desired)
    assert sorted(await fetch_applied_files(conn) or {}) == ["venues/a.yaml",
                                                             "venues/b-renamed.yaml"]
    desired, planned = await both_plans(conn, config, plugins)
    assert planned == []
    assert skipped(desired) == ["a.yaml", "b-renamed.yaml"]


async def test_a_new_file_with_a_skipped_files_venue_id_is_reported_as_ever(
        conn: asyncpg.Connection, config: Path, plugins: Plugins) -> None:
    await apply_desired(conn, load_config(config, plugins))
    applied = await fetch_applied_files(conn)
    for name in ("0-first.yaml", "z-last.yaml"):  # before and after the skipped b.yaml
        copy = config / "venues" / name
        copy.write_text(venue_yaml(VENUE_B, "Riverside Copy"))
        with pytest.raises(ConfigInvalid) as skipping:
            load_config(config, plugins, applied=applied)
        with pytest.raises(ConfigInvalid) as full:
            load_config(config, plugins)
        assert [str(p) for p in skipping.value.problems] == \
            [str(p) for p in full.value.problems]
        assert any("is used by two files" in p.message for p in skipping.value.problems)
        copy.unlink()


async def test_a_secret_file_leading_outside_is_reported_for_a_skipped_file(
        conn: asyncpg.Connection, config: Path, plugins: Plugins, tmp_path: Path) -> None:
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    scope = CredentialScope(env_prefixes=("TESTPROV_",), secrets_dir=secrets)
    (config / "venues" / "b.yaml").write_text(
        venue_yaml(VENUE_B, "Riverside Music Hall").replace("env:TESTPROV_KEY",
                                                              "file:testprov/key"))
    (config / "venues" / "a.yaml").write_text(
        venue_yaml(VENUE_A, "The Laugh Cellar").replace("env:TESTPROV_KEY",
                                                        "env:TESTPROV_A"))
    (config / "venues" / "c.yaml").unlink()
    await apply_desired(conn, load_config(config, plugins, scope=scope))
    applied = await fetch_applied_files(conn)
    assert applied is not None
    assert applied["venues/b.yaml"].secret_files == ("file:testprov/key",)
    desired = load_config(config, plugins, scope=scope, applied=applied)
    assert skipped(desired) == ["a.yaml", "b.yaml"]

    (tmp_path / "outside").write_text("not a secret")
    (secrets / "testprov").mkdir()
    (secrets / "testprov" / "key").symlink_to(tmp_path / "outside")
    with pytest.raises(ConfigInvalid) as exc:
        load_config(config, plugins, scope=scope, applied=applied)
    (problem,) = exc.value.problems
    assert Path(problem.file).name == "b.yaml"
    assert "leads outside the secrets directory" in problem.message


@st.composite
def edits(draw: st.DrawFn) -> tuple[dict[str, str], dict[str, str], bool, bool]:
    """A config, a later one sharing some of its files, whether rows drift between, and
    whether the plan prunes."""
    before = draw(configs())
    after = {name: text for name, text in before.items() if draw(st.integers(0, 3))}
    after.update(draw(configs()) if draw(st.booleans()) else {})
    return before, after, draw(st.booleans()), draw(st.booleans())


async def skip_equals_full(url: str, before: dict[str, str], after: dict[str, str],
                           drift: bool, prune: bool) -> None:
    plugins = load_plugins([], extra=[("small", SmallPlugin())])
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "venues").mkdir()
        for name, text in before.items():
            (root / "venues" / name).write_text(text)
        conn = await asyncpg.connect(url)
        try:
            await init_connection(conn)
            await apply_desired(conn, load_config(root, plugins), force=True)
            for name in before:
                (root / "venues" / name).unlink()
            for name, text in after.items():
                (root / "venues" / name).write_text(text)
            if drift:
                # Every testprov row, whichever file it came from (skipped ones too).
                await conn.execute("UPDATE integration_configs SET options = "
                                   "options || '{\"list_id\": \"drifted\"}' WHERE "
                                   "provider = 'testprov'")
            problems: list[ConfigProblem] = []
            try:
                full = load_config(root, plugins)
            except ConfigInvalid as exc:  # two files with one venue id
                problems = exc.problems
            if problems:
                with pytest.raises(ConfigInvalid) as skipping:
                    await load_against_database(conn, root, plugins)
                assert skipping.value.problems == problems
                return
            await both_plans(conn, root, plugins, prune=prune)
            await apply_desired(conn, full, force=True, prune=prune)
            _, planned = await both_plans(conn, root, plugins, prune=prune)
            assert planned == []
        finally:
            await conn.close()


@settings(max_examples=30, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture,
                                 HealthCheck.too_slow])
@given(case=edits())
def test_a_plan_that_skips_files_is_the_plan_of_a_full_load(
        db_url: str, case: tuple[dict[str, str], dict[str, str], bool, bool]) -> None:
    asyncio.run(skip_equals_full(db_url, *case))
