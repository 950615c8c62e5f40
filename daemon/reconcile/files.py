"""The record of applied venue files (``config_files``): read before a load, written by apply.

See :mod:`daemon.config.applied` for what is recorded and why skipping a file is exact.
"""

from __future__ import annotations

import json
from pathlib import Path
from uuid import UUID

import asyncpg

from daemon.config import load_config
from daemon.config.applied import AppliedFile, stored_name
from daemon.config.desired import DesiredState
from daemon.config.limits import DEFAULT_LIMITS, YamlLimits
from daemon.credential_scope import CredentialScope
from daemon.plugins import Plugins
from daemon.reconcile.plan import Plan
from daemon.sql import queries

__all__ = ["fetch_applied_files", "load_against_database", "record_applied_files"]


async def fetch_applied_files(conn: asyncpg.Connection) -> dict[str, AppliedFile] | None:
    """What the last apply recorded of each venue file, by recorded name; None when the
    database has no record this role may read (then every file is read)."""
    q = queries("config.sql")
    if not await conn.fetchval(q["config_files_readable"]):
        return None
    rows = json.loads(await conn.fetchval(q["applied_files"]))
    return {name: AppliedFile.from_row(digest, deps, entry)
            for name, digest, deps, entry in rows}


async def load_against_database(conn: asyncpg.Connection, root: Path, plugins: Plugins, *,
                                limits: YamlLimits = DEFAULT_LIMITS,
                                scope: CredentialScope | None = None) -> DesiredState:
    """:func:`load_config` of ``root``, skipping the venue files unchanged since the last
    apply recorded in the database ``conn`` is connected to."""
    applied = await fetch_applied_files(conn)
    return load_config(root, plugins, limits=limits, scope=scope, applied=applied)


async def record_applied_files(conn: asyncpg.Connection, desired: DesiredState, plan: Plan,
                               revision_id: int | None) -> int:
    """Record the venue files of ``desired`` as applied (inside apply's transaction, after
    its writes); the number of files recorded anew."""
    sources = desired.sources
    q = queries("config.sql")
    if sources is None or not await conn.fetchval(q["config_files_readable"]):
        return 0
    fresh = sources.checked
    again = {name: sources.skipped[name] for name in plan.expanded if name in sources.skipped}
    venues = [c.venue_id for c in fresh.values()] + [a.venue_id for a in again.values()]
    digests: dict[str, str] = {}
    if venues:
        digests = json.loads(await conn.fetchval(q["integration_digests"], venues))
    entries: dict[str, AppliedFile] = {}
    for name, checked in fresh.items():
        rows = _rows(digests, checked.venue_id, checked.providers)
        if rows is not None:
            entries[name] = checked.applied(sources.deps, rows)
    for name, applied in again.items():
        rows = _rows(digests, applied.venue_id, tuple(applied.rows))
        if rows is not None:
            entries[name] = AppliedFile(applied.digest, applied.deps, applied.venue_id, rows,
                                        applied.removed, applied.secret_files)
    stored = sources.stored
    changed = [[stored_name(name), entry.digest, entry.deps, entry.entry()]
               for name, entry in entries.items()
               if stored is None or stored.get(stored_name(name)) != entry]
    if changed:
        await conn.execute(q["record_files"], changed, revision_id)
    names = [stored_name(name) for name in sources.names]
    if stored is None or not set(stored) <= set(names):
        await conn.execute(q["forget_files"], names)
    return len(changed)


def _rows(digests: dict[str, str], venue_id: UUID, providers: tuple[str, ...]
          ) -> dict[str, str] | None:
    """provider -> row digest, or None when a row is missing (the file is not recorded,
    so the next load reads it)."""
    rows: dict[str, str] = {}
    for provider in providers:
        digest = digests.get(f"{venue_id}/{provider}")
        if digest is None:
            return None
        rows[provider] = digest
    return rows
