"""The schema built from migrations, and the migration runner's guarantees."""

from __future__ import annotations

import asyncio
from pathlib import Path

import asyncpg
import pytest

from daemon.db import connect
from daemon.errors import MigrationError
from daemon.migrate import apply_migrations, load_migrations, migration_status

EXPECTED_TABLES = {
    "schema_migrations", "integration_configs", "oauth_tokens", "venue_api_keys", "sync_queue",
    "field_mapping_templates", "integration_webhooks", "sync_logs", "integration_health",
    "integration_costs", "oauth_states", "entity_links", "config_revisions", "inbound_changes",
    "schedule_ticks", "rate_limit_accounts", "rate_limit_buckets", "rate_limit_slots",
}


async def test_schema_from_migrations_has_every_table(conn: asyncpg.Connection) -> None:
    rows = await conn.fetch(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'"
    )
    assert {r["table_name"] for r in rows} >= EXPECTED_TABLES


async def test_money_is_integer_and_time_is_timestamptz(conn: asyncpg.Connection) -> None:
    rows = await conn.fetch(
        """SELECT table_name, column_name, data_type FROM information_schema.columns
           WHERE table_schema = 'public'"""
    )
    for r in rows:
        if r["column_name"].endswith(("_at", "_cost")) or r["column_name"] in ("run_at", "tick"):
            expected = (
                "bigint" if r["column_name"].endswith("_cost") else "timestamp with time zone"
            )
            assert r["data_type"] == expected, (r["table_name"], r["column_name"])
        assert r["data_type"] not in ("real", "double precision", "money"), dict(r)


async def test_statuses_outside_the_enums_are_refused(conn: asyncpg.Connection) -> None:
    # The replaced service wrote 'recovering' and 'disabled'; Postgres refuses both now.
    with pytest.raises(asyncpg.CheckViolationError):
        await conn.execute(
            "INSERT INTO sync_queue (venue_id, provider, entity_type, status) "
            "VALUES (gen_random_uuid(), 'stripe', 'customer', 'recovering')"
        )
    with pytest.raises(asyncpg.CheckViolationError):
        await conn.execute(
            "INSERT INTO integration_configs (venue_id, provider, status) "
            "VALUES (gen_random_uuid(), 'stripe', 'disabled')"
        )


async def test_one_running_job_per_integration_is_enforced(conn: asyncpg.Connection) -> None:
    venue = await conn.fetchval("SELECT gen_random_uuid()")
    insert = (
        "INSERT INTO sync_queue (venue_id, provider, entity_type, status, lease_token) "
        "VALUES ($1, 'square', $2, 'processing', gen_random_uuid())"
    )
    await conn.execute(insert, venue, "customer")
    with pytest.raises(asyncpg.UniqueViolationError):
        await conn.execute(insert, venue, "product")


async def test_cron_tick_fires_once(conn: asyncpg.Connection) -> None:
    integration = await conn.fetchval(
        "INSERT INTO integration_configs (venue_id, provider) VALUES (gen_random_uuid(), 'stripe') "
        "RETURNING id"
    )
    sql = ("INSERT INTO schedule_ticks (integration_id, entity_type, tick) "
           "VALUES ($1, 'customer', '2026-01-01T00:00:00Z') ON CONFLICT DO NOTHING")
    assert await conn.execute(sql, integration) == "INSERT 0 1"
    assert await conn.execute(sql, integration) == "INSERT 0 0"


async def test_migrate_twice_is_a_no_op(empty_db_url: str) -> None:
    conn = await connect(empty_db_url)
    try:
        first = await apply_migrations(conn)
        assert [m.version for m in first] == [m.version for m in load_migrations()]
        assert await apply_migrations(conn) == []
        states = {s.state for s in await migration_status(conn)}
        assert states == {"applied"}
    finally:
        await conn.close()


async def test_concurrent_migrations_apply_each_file_once(empty_db_url: str) -> None:
    conns = [await connect(empty_db_url) for _ in range(3)]
    try:
        results = await asyncio.gather(*(apply_migrations(c) for c in conns))
        applied = [m.version for r in results for m in r]
        assert sorted(applied) == [m.version for m in load_migrations()]
        count = await conns[0].fetchval("SELECT count(*) FROM schema_migrations")
        assert count == len(load_migrations())
    finally:
        for c in conns:
            await c.close()


async def test_changed_applied_migration_is_refused(empty_db_url: str, tmp_path: Path) -> None:
    (tmp_path / "0001_first.sql").write_text("CREATE TABLE a (id int);")
    conn = await connect(empty_db_url)
    try:
        await apply_migrations(conn, load_migrations(tmp_path))
        (tmp_path / "0001_first.sql").write_text("CREATE TABLE a (id bigint);")
        (tmp_path / "0002_second.sql").write_text("CREATE TABLE b (id int);")
        with pytest.raises(MigrationError, match=r"0001_first\.sql was changed"):
            await apply_migrations(conn, load_migrations(tmp_path))
        # Nothing after the refusal was applied.
        assert await conn.fetchval("SELECT to_regclass('b')") is None
        states = {s.name: s.state for s in await migration_status(conn, load_migrations(tmp_path))}
        assert states == {"first": "changed", "second": "pending"}
    finally:
        await conn.close()


async def test_failing_migration_rolls_back_alone(empty_db_url: str, tmp_path: Path) -> None:
    (tmp_path / "0001_ok.sql").write_text("CREATE TABLE ok (id int);")
    (tmp_path / "0002_bad.sql").write_text("CREATE TABLE half (id int); SELECT no_such_fn();")
    conn = await connect(empty_db_url)
    try:
        with pytest.raises(MigrationError, match=r"0002_bad\.sql failed"):
            await apply_migrations(conn, load_migrations(tmp_path))
        assert await conn.fetchval("SELECT to_regclass('ok')") is not None
        assert await conn.fetchval("SELECT to_regclass('half')") is None
        assert await conn.fetchval("SELECT count(*) FROM schema_migrations") == 1
    finally:
        await conn.close()


def test_misnamed_migration_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "1_bad.sql").write_text("SELECT 1;")
    with pytest.raises(MigrationError, match=r"1_bad\.sql"):
        load_migrations(tmp_path)


def _named_queries() -> list[tuple[str, str, str]]:
    from importlib import resources

    from daemon.sql import parse_queries

    out = []
    for entry in resources.files("daemon.sql").iterdir():
        if entry.name.endswith(".sql"):
            for name, sql in parse_queries(entry.read_text(), source=entry.name).items():
                out.append((entry.name, name, sql))
    return out


_UTILITY = ("CREATE", "ALTER", "DROP", "LISTEN", "UNLISTEN", "NOTIFY", "LOCK", "SET", "DO")


async def test_every_named_query_fits_the_schema(conn: asyncpg.Connection) -> None:
    """Postgres parses and plans each query the code ships against the migrated schema, so a
    column or table the code expects but the migrations lack fails here, not in production."""
    checked = 0
    for filename, name, sql in _named_queries():
        if sql.lstrip().upper().startswith(_UTILITY):
            continue
        try:
            await conn.prepare(sql)
        except asyncpg.PostgresError as exc:
            raise AssertionError(f"{filename} query {name!r}: {exc}") from None
        checked += 1
    assert checked > 0
