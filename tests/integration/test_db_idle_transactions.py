"""A session that stops talking inside a transaction (a worker cut off from Postgres, a
frozen process) is ended by the server after ``SYNCD_DB_IDLE_TRANSACTION_TIMEOUT``: its locks
go and its writes roll back, so a job's row it held can be taken over once the lease is out."""

from __future__ import annotations

import asyncio
import contextlib

import asyncpg
import pytest

from daemon.db import Database, open_pool
from daemon.settings import Settings


async def _held_row_is_released(pool: asyncpg.Pool, db_url: str) -> None:
    await pool.execute("CREATE TABLE jobs (id int PRIMARY KEY, owner text)")
    await pool.execute("INSERT INTO jobs VALUES (1, 'first')")
    stuck = await pool.acquire()
    try:
        tx = stuck.transaction()
        await tx.start()
        await stuck.execute("SELECT * FROM jobs WHERE id = 1 FOR UPDATE")
        await stuck.execute("UPDATE jobs SET owner = 'stuck' WHERE id = 1")
        # The holder says nothing more; another session waits for the row, then gets it.
        other = await asyncpg.connect(db_url)
        try:
            await other.execute("SET lock_timeout = '20s'")
            taken = await other.fetchval(
                "UPDATE jobs SET owner = 'second' WHERE id = 1 RETURNING owner")
        finally:
            await other.close()
        assert taken == "second"
        with pytest.raises((asyncpg.PostgresError, asyncpg.InterfaceError, ConnectionError)):
            await stuck.execute("SELECT 1")
    finally:
        # Give the slot back whatever happened (a pool waits for its connections when it
        # closes). asyncpg may have handed the connection the server ended back to the pool
        # itself, or find it mid-operation: both are the ended session, not a failure.
        with contextlib.suppress(asyncpg.InterfaceError, asyncpg.InternalClientError):
            await pool.release(stuck)
    assert await pool.fetchval("SELECT owner FROM jobs") == "second"


async def test_a_session_idle_in_a_transaction_is_ended_and_its_row_released(
        db_url: str) -> None:
    pool = await open_pool(db_url, idle_transaction_timeout=0.5)
    try:
        await _held_row_is_released(pool, db_url)
    finally:
        await asyncio.wait_for(pool.close(), 30)


async def test_the_setting_reaches_every_pooled_connection(db_url: str) -> None:
    settings = Settings(database_url=db_url, db_idle_transaction_timeout=1.5)
    async with Database(settings) as db:
        value = await db.pool.fetchval("SHOW idle_in_transaction_session_timeout")
        assert value == "1500ms"
    off = Settings(database_url=db_url, db_idle_transaction_timeout=0)
    async with Database(off) as db:
        assert await db.pool.fetchval("SHOW idle_in_transaction_session_timeout") == "0"
