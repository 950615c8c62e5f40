"""Migration 0010: unsubscribes stored before it hold against pushes once it is applied,
and every change stored before it is processed once."""

from __future__ import annotations

import uuid

import asyncpg

from daemon.migrate import apply_migrations, load_migrations

VENUE = uuid.UUID("5e0c4b7a-0000-4000-8000-0000000000aa")


async def test_unsubscribes_stored_before_the_migration_hold(empty_db_url: str) -> None:
    every = load_migrations()
    conn = await asyncpg.connect(empty_db_url)
    try:
        await apply_migrations(conn, [m for m in every if m.version < 10])
        rows = [("m-unsub", "subscribed", "2026-01-01"), ("m-unsub", "unsubscribed", "2026-02-01"),
                ("m-back", "unsubscribed", "2026-01-01"), ("m-back", "subscribed", "2026-02-01"),
                ("m-other", "updated", "2026-02-01")]
        for n, (remote, change, at) in enumerate(rows):
            await conn.execute(
                "INSERT INTO inbound_changes (venue_id, provider, entity_type, remote_id, "
                "change, source, dedupe_key, occurred_at) VALUES ($1, 'mailchimp', "
                "'customer', $2, $3, 'pull', $4, $5::text::timestamptz)",
                VENUE, remote, change, f"k{n}", at)
        await apply_migrations(conn, every)
        holds = await conn.fetch("SELECT remote_id, state FROM consent_holds")
        assert [(h["remote_id"], h["state"]) for h in holds] == [("m-unsub", "withdrawn")]
        statuses = await conn.fetch("SELECT DISTINCT status FROM inbound_changes")
        assert [s["status"] for s in statuses] == ["pending"]
    finally:
        await conn.close()
