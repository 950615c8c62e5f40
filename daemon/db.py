"""The database: one asyncpg pool, on a configured server or an embedded Postgres.

With no database URL, :class:`Database` starts (or joins) an embedded Postgres through the
``pgserver`` package in ``Settings.data_dir``. Its data persists across runs; the server stops
when the last process using it closes its handle.
"""

from __future__ import annotations

import asyncio
import json
import socket
import warnings
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import asyncpg
from asyncpg.pool import PoolAcquireContext

from daemon.errors import DatabaseUnavailable
from daemon.logs import get_logger, mask_url
from daemon.settings import Settings

__all__ = [
    "Database",
    "EmbeddedPostgres",
    "PoolTimeout",
    "TimedPool",
    "connect",
    "describe_dsn",
    "init_connection",
    "open_pool",
]

log = get_logger("syncd.db")


def describe_dsn(dsn: str) -> str:
    """``host:port/database`` of a Postgres URL, for messages. Never includes the password."""
    parts = urlsplit(dsn)
    query = parse_qs(parts.query)
    host = parts.hostname or (query.get("host") or ["localhost"])[0]
    port = parts.port or 5432
    database = parts.path.lstrip("/") or (query.get("dbname") or [parts.username or "postgres"])[0]
    return f"{host}:{port}/{database}" if not host.startswith("/") else f"{host}/{database}"


async def init_connection(conn: asyncpg.Connection) -> None:
    """Per-connection set-up: JSON codecs for json and jsonb, UTC session time zone."""
    for typename in ("json", "jsonb"):
        await conn.set_type_codec(
            typename, encoder=json.dumps, decoder=json.loads, schema="pg_catalog"
        )
    await conn.execute("SET TIME ZONE 'UTC'")


def _unavailable(dsn: str, exc: BaseException) -> DatabaseUnavailable:
    reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    reason = mask_url(reason)
    return DatabaseUnavailable(f"cannot connect to database {describe_dsn(dsn)}: {reason}")


_CONNECT_ERRORS = (
    OSError,
    asyncio.TimeoutError,
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    socket.gaierror,
    ValueError,
)


async def connect(dsn: str, *, timeout: float = 10.0) -> asyncpg.Connection:
    """One connection, with our codecs; a :class:`DatabaseUnavailable` on failure."""
    try:
        conn = await asyncpg.connect(dsn, timeout=timeout)
    except _CONNECT_ERRORS as exc:
        raise _unavailable(dsn, exc) from None
    await init_connection(conn)
    return conn


class PoolTimeout(DatabaseUnavailable):
    """No pooled connection came free in time. Callers treat it as any transient database
    failure: a job ends as a retry, a loop tries again on its next turn."""


class _TimedAcquire(PoolAcquireContext):  # type: ignore[misc]  # asyncpg is untyped
    __slots__ = ()

    async def __aenter__(self) -> asyncpg.Connection:
        try:
            return await super().__aenter__()
        except TimeoutError:
            raise _timed_out(self.timeout) from None

    def __await__(self) -> Any:
        return self._acquire().__await__()

    async def _acquire(self) -> asyncpg.Connection:
        self.done = True  # type: ignore[misc]  # a slot of the base class
        try:
            return await self.pool._acquire(self.timeout)
        except TimeoutError:
            raise _timed_out(self.timeout) from None


def _timed_out(timeout: float | None) -> PoolTimeout:
    return PoolTimeout(f"no database connection free within {timeout:g} s "
                       "(the pool is exhausted)")


class TimedPool(asyncpg.Pool):  # type: ignore[misc]  # asyncpg is untyped
    """A pool whose every acquire (``pool.fetch`` and friends included) waits at most
    ``acquire_timeout`` seconds, then raises :class:`PoolTimeout`: a caller never hangs on
    an exhausted pool."""

    def __init__(self, dsn: str, *, acquire_timeout: float, **kwargs: Any) -> None:
        super().__init__(dsn, **kwargs)
        self.acquire_timeout = acquire_timeout

    def acquire(self, *, timeout: float | None = None) -> PoolAcquireContext:
        return _TimedAcquire(self, self.acquire_timeout if timeout is None else timeout)


async def open_pool(
    dsn: str, *, min_size: int = 1, max_size: int = 10, timeout: float = 10.0,
    acquire_timeout: float = 30.0, idle_transaction_timeout: float = 0.0,
) -> asyncpg.Pool:
    """A connection pool (a :class:`TimedPool`); a :class:`DatabaseUnavailable` (one line, no
    password) when it cannot connect.

    :param timeout: seconds to wait for a new connection to the server.
    :param acquire_timeout: seconds to wait for a free pooled connection.
    :param idle_transaction_timeout: seconds a connection may stay silent inside a
        transaction before the server ends its session (0: never), so that a client that
        vanished mid-transaction does not hold its locks for ever.
    """
    server_settings = {}
    if idle_transaction_timeout > 0:
        server_settings["idle_in_transaction_session_timeout"] = str(
            max(1, round(idle_transaction_timeout * 1000)))
    pool = TimedPool(
        dsn,
        acquire_timeout=acquire_timeout,
        min_size=min_size,
        max_size=max_size,
        max_queries=50000,
        max_inactive_connection_lifetime=300.0,
        init=init_connection,
        loop=None,
        connection_class=asyncpg.Connection,
        record_class=asyncpg.Record,
        timeout=timeout,
        server_settings=server_settings or None,
    )
    try:
        await pool
    except _CONNECT_ERRORS as exc:
        raise _unavailable(dsn, exc) from None
    return pool


@dataclass
class EmbeddedPostgres:
    """A handle on the embedded Postgres in ``data_dir`` (shared between processes)."""

    data_dir: Path
    _server: Any = None

    async def start(self) -> str:
        """Start or join the server; returns its URL."""
        return await asyncio.to_thread(self._start_sync)

    def _start_sync(self) -> str:
        with warnings.catch_warnings():
            # platformdirs warns when XDG_RUNTIME_DIR is unset (containers, CI): harmless.
            warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")
            return self._start_server()

    def _start_server(self) -> str:
        try:
            import pgserver
        except ImportError as exc:  # pragma: no cover - it is a dependency
            raise DatabaseUnavailable(
                "no database URL is set and the embedded Postgres (pgserver) is not installed"
            ) from exc
        self.data_dir.mkdir(parents=True, exist_ok=True)
        try:
            self._server = pgserver.get_server(  # type: ignore[attr-defined]
                self.data_dir, cleanup_mode="stop"
            )
        except Exception as exc:
            raise DatabaseUnavailable(
                f"cannot start the embedded Postgres in {self.data_dir}: {exc}"
            ) from None
        return str(self._server.get_uri())

    async def stop(self) -> None:
        """Release this process's handle; the last one out stops the server."""
        if self._server is not None:
            server, self._server = self._server, None
            await asyncio.to_thread(server.cleanup)


class Database:
    """The database syncd uses: a configured URL, or the embedded Postgres.

    Use as ``async with Database(settings) as db:``; ``db.pool`` is then open.
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.embedded: EmbeddedPostgres | None = None
        self.dsn: str = ""
        self._pool: asyncpg.Pool | None = None

    @property
    def pool(self) -> asyncpg.Pool:
        if self._pool is None:
            raise RuntimeError("Database is not open")
        return self._pool

    async def resolve(self) -> str:
        """The URL to use, starting the embedded Postgres when none is configured."""
        if self.dsn:
            return self.dsn
        url = self.settings.database_url
        if url is not None and url.get_secret_value():
            self.dsn = url.get_secret_value()
            kind = "configured"
        else:
            self.embedded = EmbeddedPostgres(self.settings.data_dir)
            self.dsn = await self.embedded.start()
            kind = "embedded"
        log.info("db.using", database=describe_dsn(self.dsn), url=mask_url(self.dsn), kind=kind)
        return self.dsn

    async def open(self) -> Database:
        dsn = await self.resolve()
        try:
            self._pool = await open_pool(
                dsn,
                min_size=self.settings.db_pool_min_size,
                max_size=self.settings.db_pool_max_size,
                timeout=self.settings.db_connect_timeout,
                acquire_timeout=self.settings.db_acquire_timeout,
                idle_transaction_timeout=self.settings.db_idle_transaction_timeout,
            )
        except BaseException:
            await self._stop_embedded()
            raise
        return self

    async def close(self) -> None:
        if self._pool is not None:
            pool, self._pool = self._pool, None
            await pool.close()
        await self._stop_embedded()

    async def _stop_embedded(self) -> None:
        if self.embedded is not None:
            await self.embedded.stop()
            self.embedded = None

    async def __aenter__(self) -> Database:
        return await self.open()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[asyncpg.Connection]:
        """A pooled connection for the duration of the block."""
        async with self.pool.acquire() as conn:
            yield conn
