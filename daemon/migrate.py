"""Schema migrations: ordered SQL files applied once each, under an advisory lock.

Files are named ``NNNN_description.sql``. Each pending file runs in its own transaction and is
recorded in ``schema_migrations`` with a SHA-256 checksum. A file whose checksum no longer
matches the recorded one stops the run: history is not rewritten silently.
"""

from __future__ import annotations

import hashlib
import re
import time
from dataclasses import dataclass
from datetime import datetime
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path

import asyncpg

from daemon.errors import MigrationError
from daemon.logs import get_logger
from daemon.sql import queries

__all__ = [
    "LOCK_KEY",
    "Migration",
    "MigrationStatus",
    "apply_migrations",
    "load_migrations",
    "migration_status",
]

log = get_logger("syncd.migrate")

#: Advisory lock key shared by every process that migrates:
#: the first 8 bytes of sha256("syncd.migrate").
LOCK_KEY = int.from_bytes(hashlib.sha256(b"syncd.migrate").digest()[:8], "big", signed=True)

_FILE = re.compile(r"^(?P<version>\d{4})_(?P<name>[a-z0-9_]+)\.sql$")
_Q = queries("migrate.sql")


@dataclass(frozen=True, slots=True)
class Migration:
    """One migration file."""

    version: int
    name: str
    filename: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode("utf-8")).hexdigest()


@dataclass(frozen=True, slots=True)
class MigrationStatus:
    """A migration's state in one database."""

    version: int
    name: str
    state: str  # "applied", "pending", "changed" or "missing" (recorded, no file)
    applied_at: datetime | None


def _migrations_dir() -> Traversable:
    packaged = resources.files("daemon").joinpath("_migrations")
    if packaged.is_dir():
        return packaged
    # Editable install or a bare checkout: the repository's top-level migrations/.
    return Path(__file__).resolve().parent.parent / "migrations"


def load_migrations(directory: Traversable | Path | None = None) -> list[Migration]:
    """Every migration file in order; a :class:`MigrationError` for a misnamed or duplicate one."""
    root = directory if directory is not None else _migrations_dir()
    found: dict[int, Migration] = {}
    for entry in root.iterdir():
        if not entry.name.endswith(".sql"):
            continue
        match = _FILE.match(entry.name)
        if not match:
            raise MigrationError(
                f"migration file {entry.name}: name must look like 0001_description.sql"
            )
        version = int(match["version"])
        if version in found:
            raise MigrationError(
                f"migration files {found[version].filename} and {entry.name} "
                f"share version {version}"
            )
        found[version] = Migration(
            version, match["name"], entry.name, entry.read_text(encoding="utf-8")
        )
    return [found[v] for v in sorted(found)]


async def _applied(conn: asyncpg.Connection) -> dict[int, asyncpg.Record]:
    if not await conn.fetchval(_Q["table_exists"]):
        return {}
    return {row["version"]: row for row in await conn.fetch(_Q["applied"])}


def _check_unchanged(migrations: list[Migration], applied: dict[int, asyncpg.Record]) -> None:
    for m in migrations:
        row = applied.get(m.version)
        if row is not None and row["checksum"] != m.checksum:
            raise MigrationError(
                f"migration {m.filename} was changed after it was applied "
                f"(recorded checksum {row['checksum'][:12]}, file {m.checksum[:12]}); "
                "add a new migration instead of editing an applied one"
            )


async def apply_migrations(
    conn: asyncpg.Connection, migrations: list[Migration] | None = None
) -> list[Migration]:
    """Apply pending migrations; returns those applied by this call (empty when up to date).

    Holds a session advisory lock for the whole run, so concurrent callers apply each file
    exactly once: the second waits, then finds nothing pending.
    """
    todo = migrations if migrations is not None else load_migrations()
    await conn.execute(_Q["lock"], LOCK_KEY)
    try:
        await conn.execute(_Q["create_table"])
        applied = await _applied(conn)
        _check_unchanged(todo, applied)
        done: list[Migration] = []
        for m in todo:
            if m.version in applied:
                continue
            started = time.perf_counter()
            try:
                async with conn.transaction():
                    await conn.execute(m.sql)
                    await conn.execute(
                        _Q["record"],
                        m.version,
                        m.name,
                        m.checksum,
                        int((time.perf_counter() - started) * 1000),
                    )
            except asyncpg.PostgresError as exc:
                raise MigrationError(f"migration {m.filename} failed: {exc}") from None
            log.info("migrate.applied", version=m.version, file=m.filename)
            done.append(m)
        return done
    finally:
        await conn.execute(_Q["unlock"], LOCK_KEY)


async def migration_status(
    conn: asyncpg.Connection, migrations: list[Migration] | None = None
) -> list[MigrationStatus]:
    """Each migration's state in this database, by version."""
    files = {m.version: m for m in (migrations if migrations is not None else load_migrations())}
    applied = await _applied(conn)
    out: list[MigrationStatus] = []
    for version in sorted(set(files) | set(applied)):
        m, row = files.get(version), applied.get(version)
        if m is None:
            assert row is not None
            out.append(MigrationStatus(version, row["name"], "missing", row["applied_at"]))
        elif row is None:
            out.append(MigrationStatus(version, m.name, "pending", None))
        else:
            state = "applied" if row["checksum"] == m.checksum else "changed"
            out.append(MigrationStatus(version, m.name, state, row["applied_at"]))
    return out
