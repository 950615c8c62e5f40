"""The record of applied venue files (``config_files``): read before a load, written by apply.

See :mod:`daemon.config.applied` for what is recorded and why skipping a file is exact.
"""

from __future__ import annotations

import sys
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

#: Files recorded per statement.
_RECORD_CHUNK = 2_000


async def fetch_applied_files(conn: asyncpg.Connection) -> dict[str, AppliedFile] | None:
    """What the last apply recorded of each venue file, by recorded name; None when the
    database has no record this role may read (then every file is read)."""
    q = queries("config.sql")
    if not await conn.fetchval(q["config_files_readable"]):
        return None
    found: dict[str, AppliedFile] = {}
    for row in await conn.fetch(q["applied_files"]):
        # One text for every file's fingerprint, not one each.
        found[row["name"]] = AppliedFile(
            row["digest"], sys.intern(row["deps"]), row["venue"], row["rows"],
            tuple(row["removed"] or ()), tuple(row["secret_files"] or ()))
    return found


async def load_against_database(conn: asyncpg.Connection, root: Path, plugins: Plugins, *,
                                limits: YamlLimits = DEFAULT_LIMITS,
                                scope: CredentialScope | None = None) -> DesiredState:
    """:func:`load_config` of ``root``, skipping the venue files unchanged since the last
    apply recorded in the database ``conn`` is connected to."""
    applied = await fetch_applied_files(conn)
    return load_config(root, plugins, limits=limits, scope=scope, applied=applied)


async def record_applied_files(conn: asyncpg.Connection, desired: DesiredState, plan: Plan,
                               revision_id: int | None) -> int:
    """Record the venue files of ``desired`` read in this load, or read by the plan after
    all, as applied (inside apply's transaction, after its writes); the rows written."""
    sources = desired.sources
    q = queries("config.sql")
    if sources is None or not await conn.fetchval(q["config_files_readable"]):
        return 0
    files: list[tuple[str, str, UUID, list[str], tuple[str, ...], tuple[str, ...]]] = [
        (name, c.digest, c.venue_id, list(c.providers), c.removed, c.secret_files)
        for name, c in sources.checked.items()]
    files.extend((name, a.digest, a.venue_id, sorted(a.rows), a.removed, a.secret_files)
                 for name in sorted(plan.expanded)
                 if (a := sources.skipped.get(name)) is not None)
    written = 0
    for start in range(0, len(files), _RECORD_CHUNK):  # bounded memory, as for inserts
        chunk = [{"name": stored_name(name), "digest": digest, "venue": str(venue),
                  "providers": providers,
                  "entry": {"venue": str(venue), "removed": list(removed),
                            "secret_files": list(secret_files)}}
                 for name, digest, venue, providers, removed, secret_files
                 in files[start:start + _RECORD_CHUNK]]
        status = await conn.execute(q["record_files"], chunk, sources.deps, revision_id)
        written += int(status.split()[-1])
    names = [stored_name(name) for name in sources.names]
    stored = sources.stored
    if stored is None or not set(stored) <= set(names):
        await conn.execute(q["forget_files"], names)
    return written
