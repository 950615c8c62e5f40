"""``syncd keys rotate`` and ``syncd keys status``: re-encrypting to the newest key.

Rotation works online and in batches: each batch locks its rows (``FOR UPDATE``), reseals
them under the current key version and commits, so an interruption loses at most the batch
in flight and running it again carries on where it stopped. A row written meanwhile by a
refresh is already sealed with the current version and is skipped.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import asyncpg

from daemon.logs import get_logger
from daemon.sql import queries
from daemon.vault import rows
from daemon.vault.cipher import Binding, Sealed, Vault

__all__ = ["KeyCount", "RotationReport", "key_status", "rotate"]

log = get_logger("syncd.vault")
_Q = queries("vault.sql")


@dataclass(frozen=True, slots=True)
class KeyCount:
    table: str
    version: int
    values: int


@dataclass(frozen=True, slots=True)
class RotationReport:
    version: int
    rows: int
    batches: int


async def key_status(pool: asyncpg.Pool) -> list[KeyCount]:
    """How many sealed values each key version protects, per table."""
    async with pool.acquire() as conn:
        found = await conn.fetch(_Q["key_status"])
    return [KeyCount(r["table"], r["version"], r["values"]) for r in found]


async def _maybe(vault: Vault, blob: bytes | None, version: int, binding: Binding
                 ) -> bytes | None:
    if blob is None:
        return None
    return (await vault.reseal(Sealed(version, blob), binding)).blob


async def _tokens(conn: asyncpg.Connection, vault: Vault, current: int, batch: int) -> int:
    found = await conn.fetch(_Q["stale_tokens"], current, batch)
    for r in found:
        v, p, old = r["venue_id"], r["provider"], r["encryption_key_version"]
        access = await _maybe(vault, r["encrypted_access_token"], old, rows.access_token(v, p))
        refresh = await _maybe(vault, r["encrypted_refresh_token"], old,
                               rows.refresh_token(v, p))
        await conn.execute(_Q["reseal_token"], r["id"], access, refresh, current, old)
    return len(found)


async def _api_keys(conn: asyncpg.Connection, vault: Vault, current: int, batch: int) -> int:
    found = await conn.fetch(_Q["stale_api_keys"], current, batch)
    for r in found:
        v, p, old = r["venue_id"], r["provider"], r["encryption_key_version"]
        env, name = r["environment"], r["key_name"]
        key = await _maybe(vault, r["encrypted_api_key"], old, rows.api_key(v, p, env, name))
        secret = await _maybe(vault, r["encrypted_api_secret"], old,
                              rows.api_secret(v, p, env, name))
        await conn.execute(_Q["reseal_api_key"], r["id"], key, secret, current, old)
    return len(found)


async def _states(conn: asyncpg.Connection, vault: Vault, current: int, batch: int) -> int:
    found = await conn.fetch(_Q["stale_states"], current, batch)
    for r in found:
        old = r["encryption_key_version"]
        verifier = await _maybe(vault, r["encrypted_code_verifier"], old,
                                rows.code_verifier(r["venue_id"], r["provider"], r["state"]))
        await conn.execute(_Q["reseal_state"], r["state"], verifier, current, old)
    return len(found)


_TABLES: tuple[tuple[str, Callable[[asyncpg.Connection, Vault, int, int], Awaitable[int]]],
               ...] = (("oauth_tokens", _tokens), ("venue_api_keys", _api_keys),
                       ("oauth_states", _states))


async def rotate(pool: asyncpg.Pool, vault: Vault, *, batch_size: int = 100,
                 progress: Callable[[str, int], None] | None = None) -> RotationReport:
    """Reseal every value not sealed with the current key version, one batch per commit."""
    current = vault.keys.current_version
    total = batches = 0
    for table, step in _TABLES:
        while True:
            async with pool.acquire() as conn, conn.transaction():
                done = await step(conn, vault, current, batch_size)
            if not done:
                break
            total += done
            batches += 1
            log.info("vault.rotated_batch", table=table, rows=done, version=current)
            if progress is not None:
                progress(table, done)
    log.info("vault.rotated", version=current, rows=total, batches=batches)
    return RotationReport(current, total, batches)
