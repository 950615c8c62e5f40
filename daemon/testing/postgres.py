"""A Postgres server for tests and benchmarks, and throw-away databases on it.

Order of preference: ``SYNCD_TEST_DATABASE_URL``; a server at 127.0.0.1:5432 (user
postgres) when one answers; otherwise the embedded Postgres (``pgserver``) in a private
directory. Each test gets its own database cloned from a template built once from the
migrations, as ``CREATE DATABASE ... TEMPLATE`` makes that a file copy.

Under pytest-xdist every worker process builds a template of its own (named after its
process), so no two processes ever clone from, or drop, one template; with the embedded
Postgres the workers share one server (:func:`embedded_data_dir`) rather than start one each.

:class:`TestDatabases` keeps the making and dropping of a test's database off the test's own
time: ``DROP DATABASE`` waits for a checkpoint of the whole server (PostgreSQL up to 15
forces one), which takes seconds on a busy server, and a clone costs a few hundred
milliseconds.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
import threading
import uuid
from collections.abc import Coroutine
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from daemon.db import EmbeddedPostgres, init_connection
from daemon.migrate import apply_migrations

__all__ = ["PostgresServer", "TestDatabases", "embedded_data_dir", "find_server",
           "with_database"]

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

    async def drop_template(self) -> None:
        """Drop the template database, if one was built (the next clone builds another)."""
        if self._template is not None:
            admin = await self._admin()
            try:
                await admin.execute(f'DROP DATABASE IF EXISTS "{self._template}" WITH (FORCE)')
            finally:
                await admin.close()
            self._template = None

    async def close(self) -> None:
        await self.drop_template()
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


_T = TypeVar("_T")


class TestDatabases:
    """Databases for the tests of one process, made and dropped in a thread of their own.

    :meth:`take` hands out a migrated database made while the previous test ran and starts
    making the next; :meth:`give_back` queues a used one for dropping and returns at once.
    The queued databases are dropped together, up to ``batch`` at a time (twice that once
    the tests are over), each on its own connection, so that their drops share a checkpoint
    rather than wait for one each (sixteen drops take about as long as one). :meth:`close`
    waits for every drop, then drops the template. A failed drop is raised by the next
    :meth:`take` or by :meth:`close`.
    """

    __test__ = False  # not a test class, whatever pytest makes of its name

    def __init__(self, data_dir: Path | None = None, *, batch: int = 8) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever,
                                        name="syncd-test-databases", daemon=True)
        self._thread.start()
        self._batch = batch
        self._spare: Future[str] | None = None
        # Touched only in the thread's event loop:
        self._to_drop: list[str] = []
        self._dropper: asyncio.Task[None] | None = None
        self._errors: list[BaseException] = []
        self.server: PostgresServer = self._wait(find_server(data_dir))

    def _submit(self, coro: Coroutine[Any, Any, _T]) -> Future[_T]:
        return asyncio.run_coroutine_threadsafe(coro, self._loop)

    def _wait(self, coro: Coroutine[Any, Any, _T]) -> _T:
        return self._submit(coro).result()

    def take(self, *, migrated: bool = True) -> str:
        """URL of a fresh database of the caller's own (migrated, or with no schema)."""
        self._raise_errors()
        if not migrated:
            return self._wait(self.server.create_database(migrated=False))
        spare, self._spare = self._spare, None
        url = spare.result() if spare is not None else self._wait(
            self.server.create_database())
        self._spare = self._submit(self.server.create_database())
        return url

    def give_back(self, url: str) -> None:
        """Drop the database at ``url`` in the background."""
        self._loop.call_soon_threadsafe(self._queue_drop, url)

    def _queue_drop(self, url: str) -> None:
        self._to_drop.append(url)
        if self._dropper is None or self._dropper.done():
            self._dropper = self._loop.create_task(self._drop_queued())

    async def _drop_queued(self) -> None:
        while self._to_drop:
            batch = self._to_drop[:self._batch]
            del self._to_drop[:self._batch]
            results = await asyncio.gather(*(self.server.drop_database(url) for url in batch),
                                           return_exceptions=True)
            self._errors += [r for r in results if isinstance(r, BaseException)]

    async def _drain(self) -> None:
        self._batch *= 2
        while self._dropper is not None and not self._dropper.done():
            await self._dropper

    async def _drain_and_drop_template(self) -> None:
        await asyncio.gather(self._drain(), self.server.drop_template())

    def _raise_errors(self) -> None:
        if self._errors:
            error = self._errors[0]
            self._errors.clear()
            raise error

    def close(self) -> None:
        """Drop the spare, wait for every drop, drop the template, stop the thread."""
        try:
            spare, self._spare = self._spare, None
            if spare is not None:
                self.give_back(spare.result())
            # Together, so that the last drops and the template's share a checkpoint.
            self._wait(self._drain_and_drop_template())
            self._wait(self.server.close())
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join()
            self._loop.close()
        self._raise_errors()
