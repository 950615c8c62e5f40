"""A Postgres server for tests and benchmarks, and throw-away databases on it.

Order of preference: ``SYNCD_TEST_DATABASE_URL``; a server at 127.0.0.1:5432 (user
postgres) when one answers; otherwise the embedded Postgres (``pgserver``) in a private
directory. Each test gets its own database cloned from a template built once from the
migrations, as ``CREATE DATABASE ... TEMPLATE`` makes that a file copy.
"""

from __future__ import annotations

import os
import tempfile
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from daemon.db import EmbeddedPostgres, init_connection
from daemon.migrate import apply_migrations

__all__ = ["PostgresServer", "find_server", "with_database"]

LOCAL_URL = "postgresql://postgres@127.0.0.1:5432/postgres"


def with_database(url: str, database: str) -> str:
    """``url`` pointing at another database on the same server."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{database}"))


async def _reachable(url: str) -> bool:
    try:
        conn = await asyncpg.connect(url, timeout=3)
    except (TimeoutError, OSError, asyncpg.PostgresError):
        return False
    await conn.close()
    return True


@dataclass
class PostgresServer:
    """A server on which databases can be created and dropped."""

    admin_url: str
    kind: str
    embedded: EmbeddedPostgres | None = None
    _template: str | None = field(default=None, init=False)

    async def _admin(self) -> asyncpg.Connection:
        return await asyncpg.connect(self.admin_url, timeout=10)

    async def create_template(self) -> str:
        """Build the template database from the migrations (once per server handle)."""
        if self._template is not None:
            return self._template
        name = f"syncd_tpl_{os.getpid()}_{uuid.uuid4().hex[:6]}"
        admin = await self._admin()
        try:
            await admin.execute(f'CREATE DATABASE "{name}"')
        finally:
            await admin.close()
        conn = await asyncpg.connect(with_database(self.admin_url, name))
        try:
            await init_connection(conn)
            await apply_migrations(conn)
        finally:
            await conn.close()
        self._template = name
        return name

    async def create_database(self, *, migrated: bool = True) -> str:
        """A new empty (or migrated, from the template) database; returns its URL."""
        name = f"syncd_test_{uuid.uuid4().hex[:12]}"
        template = await self.create_template() if migrated else "template0"
        admin = await self._admin()
        try:
            await admin.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
        finally:
            await admin.close()
        return with_database(self.admin_url, name)

    async def drop_database(self, url: str) -> None:
        name = urlsplit(url).path.lstrip("/")
        admin = await self._admin()
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()

    async def close(self) -> None:
        if self._template is not None:
            admin = await self._admin()
            try:
                await admin.execute(f'DROP DATABASE IF EXISTS "{self._template}" WITH (FORCE)')
            finally:
                await admin.close()
            self._template = None
        if self.embedded is not None:
            await self.embedded.stop()


async def find_server(data_dir: Path | None = None, **_: Any) -> PostgresServer:
    """The test server, chosen as the module docstring says."""
    url = os.environ.get("SYNCD_TEST_DATABASE_URL")
    if url:
        return PostgresServer(url, "configured")
    if os.environ.get("SYNCD_TEST_EMBEDDED") != "1" and await _reachable(LOCAL_URL):
        return PostgresServer(LOCAL_URL, "local")
    directory = data_dir or Path(tempfile.mkdtemp(prefix="syncd-test-pg-"))
    embedded = EmbeddedPostgres(directory)
    return PostgresServer(await embedded.start(), "embedded", embedded)
