"""A Postgres server for tests and benchmarks, and throw-away databases on it.

Order of preference: ``SYNCD_TEST_DATABASE_URL``; a server at 127.0.0.1:5432 (user
postgres) when one answers; otherwise the embedded Postgres (``pgserver``) in a private
directory. Each test gets its own database cloned from a template built once from the
migrations, as ``CREATE DATABASE ... TEMPLATE`` makes that a file copy.

Under pytest-xdist every worker process builds a template of its own (named after its
process), so no two processes ever clone from, or drop, one template; with the embedded
Postgres the workers share one server (:func:`embedded_data_dir`) rather than start one each.

"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from daemon.db import EmbeddedPostgres, init_connection
from daemon.migrate import apply_migrations

__all__ = ["PostgresServer", "embedded_data_dir", "find_server", "with_database"]

LOCAL_URL = "postgresql://postgres@127.0.0.1:5432/postgres"


def with_database(url: str, database: str) -> str:
    """``url`` pointing at another database on the same server."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{database}"))


def embedded_data_dir(run_id: str) -> Path:
    """The embedded Postgres data directory shared by the processes of one test run.

    Under pytest-xdist every worker passes the run's id (``PYTEST_XDIST_TESTRUNUID``): the
    first to arrive starts the server, the others join it (pgserver serialises this with a
    lock) and the last one out stops it. The directory lies outside pytest's numbered
    temporary folders, which a concurrent pytest session of the same user may clean up.
    """
    return Path(tempfile.gettempdir()) / f"syncd-test-pg-{run_id}"


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
    #: A data directory of this handle's own, removed by :meth:`close`.
    owned_dir: Path | None = None
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
        if self.owned_dir is not None:
            shutil.rmtree(self.owned_dir, ignore_errors=True)
            self.owned_dir = None


async def find_server(data_dir: Path | None = None, **_: Any) -> PostgresServer:
    """The test server, chosen as the module docstring says."""
    url = os.environ.get("SYNCD_TEST_DATABASE_URL")
    if url:
        return PostgresServer(url, "configured")
    if os.environ.get("SYNCD_TEST_EMBEDDED") != "1" and await _reachable(LOCAL_URL):
        return PostgresServer(LOCAL_URL, "local")
    owned = None if data_dir is not None else Path(tempfile.mkdtemp(prefix="syncd-test-pg-"))
    directory = data_dir or owned
    assert directory is not None
    embedded = EmbeddedPostgres(directory)
    return PostgresServer(await embedded.start(), "embedded", embedded, owned)
