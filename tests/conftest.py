"""Fixtures shared by every test tier.

The environment is cleaned of ``SYNCD_*`` and ``DATABASE_URL`` before any test runs, so a
developer's shell never leaks into a test. Database tests get their own database, cloned
from a template built once per session from the migrations.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import pytest

from daemon.db import init_connection
from daemon.testing.postgres import PostgresServer, find_server

_KEEP = {"SYNCD_TEST_DATABASE_URL", "SYNCD_TEST_EMBEDDED", "SYNCD_TEST_SHARED"}
for _name in list(os.environ):
    if (_name.startswith("SYNCD_") and _name not in _KEEP) or _name == "DATABASE_URL":
        del os.environ[_name]

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def pg_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PostgresServer]:
    """The Postgres server all database tests use (see daemon.testing.postgres)."""
    server = asyncio.run(find_server(tmp_path_factory.mktemp("pgdata")))
    asyncio.run(server.create_template())
    yield server
    asyncio.run(server.close())


@pytest.fixture
def db_url(pg_server: PostgresServer) -> Iterator[str]:
    """URL of a fresh, migrated database of this test's own."""
    url = asyncio.run(pg_server.create_database())
    yield url
    asyncio.run(pg_server.drop_database(url))


@pytest.fixture
def empty_db_url(pg_server: PostgresServer) -> Iterator[str]:
    """URL of a fresh database with no schema at all."""
    url = asyncio.run(pg_server.create_database(migrated=False))
    yield url
    asyncio.run(pg_server.drop_database(url))


@pytest.fixture
async def pool(db_url: str) -> AsyncIterator[asyncpg.Pool]:
    """A connection pool on this test's database."""
    p = await asyncpg.create_pool(db_url, min_size=1, max_size=5, init=init_connection)
    assert p is not None
    yield p
    await p.close()


@pytest.fixture
async def conn(pool: asyncpg.Pool) -> AsyncIterator[asyncpg.Connection]:
    """One connection on this test's database."""
    async with pool.acquire() as c:
        yield c
