"""Where applied inbound changes go: the platform's tables (the default) or a plugin.

:class:`PlatformRecords` reads and writes single platform rows through the same table and
column names as the source reader (``SYNCD_SOURCE_SCHEMA``, ``_TABLES``, ``_COLUMNS``). The
default sink, :class:`TableSink`, writes one change as one ``UPDATE`` that also bumps the
row's ``updated_at``, only while the row is not deleted and still has the change time syncd
read (else nothing is written and syncd decides again). :class:`HookSink` offers each write
to the plugins' ``syncd_inbound_change`` hook first, for platforms written through an API.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

import asyncpg

from daemon.inbound.fields import PLATFORM_FIELDS, PLATFORM_TABLES
from daemon.plugins import await_me_maybe
from daemon.provider import DeliveryStatus, InboundDelivery, InboundWrite
from daemon.source.settings import SourceSettings, render_query

__all__ = ["HookSink", "PlatformRecord", "PlatformRecords", "Sink", "TableSink"]


@dataclass(frozen=True, slots=True)
class PlatformRecord:
    """One platform row's writable fields, change time and deletion mark."""

    values: Mapping[str, Any]
    updated_at: datetime | None
    deleted: bool


class Sink(Protocol):
    """Delivers one :class:`~daemon.provider.InboundWrite` to the platform.

    ``conn`` is syncd's connection in the change's transaction when the platform's tables
    are in syncd's own database (a sink writing there joins that transaction, so the write
    and the change's outcome commit together); None otherwise.
    """

    async def deliver(self, write: InboundWrite, conn: asyncpg.Connection | None = None
                      ) -> InboundDelivery: ...


def _table(entity: str) -> str:
    try:
        return PLATFORM_TABLES[entity]
    except KeyError:
        raise LookupError(f"the platform has no table for {entity} records") from None


class PlatformRecords:
    """Single platform rows by local id, through the source's names."""

    def __init__(self, pool: asyncpg.Pool, settings: SourceSettings | None = None) -> None:
        self.pool = pool
        self.settings = settings or SourceSettings()
        self._reads: dict[tuple[str, bool], str] = {}
        self._writes: dict[tuple[str, tuple[str, ...]], str] = {}

    def _read_sql(self, entity: str, lock: bool) -> str:
        key = (entity, lock)
        if key not in self._reads:
            table = _table(entity)
            columns = ", ".join(f'{{{f.column_key}}} AS "{f.path}"'
                                for f in PLATFORM_FIELDS[entity].values())
            sql = (f"SELECT {columns}, {{{table}.updated_at}} AS updated_at, "
                   f"{{{table}.deleted_at}} AS deleted_at FROM {{{table}}} "
                   f"WHERE {{{table}.id}} = $1 AND {{{table}.venue_id}} = $2")
            if lock:
                sql += " FOR UPDATE"
            self._reads[key] = render_query(sql, self.settings)
        return self._reads[key]

    def _write_sql(self, entity: str, fields: Sequence[str]) -> str:
        key = (entity, tuple(fields))
        if key not in self._writes:
            table = _table(entity)
            specs = PLATFORM_FIELDS[entity]
            sets = ", ".join(f"{{{specs[f].column_key}}} = ${i}"
                             for i, f in enumerate(fields, start=4))
            # clock_timestamp(), not now(): a transaction that started before a concurrent
            # edit committed must not move updated_at back past it (readers use it as a
            # watermark).
            sql = (f"UPDATE {{{table}}} SET {sets}, {{{table}.updated_at}} = "
                   f"GREATEST(clock_timestamp(), {{{table}.updated_at}}) "
                   f"WHERE {{{table}.id}} = $1 AND {{{table}.venue_id}} = $2 "
                   f"AND {{{table}.deleted_at}} IS NULL "
                   f"AND ($3::timestamptz IS NULL OR {{{table}.updated_at}} = $3) "
                   f"RETURNING {{{table}.updated_at}} AS updated_at")
            self._writes[key] = render_query(sql, self.settings)
        return self._writes[key]

    async def read(self, entity: str, venue_id: str, local_id: str, *,
                   conn: asyncpg.Connection | None = None, lock: bool = False
                   ) -> PlatformRecord | None:
        """The row, or None when there is none (or the id cannot be one)."""
        sql = self._read_sql(entity, lock and conn is not None)
        try:
            if conn is not None:
                row = await conn.fetchrow(sql, local_id, venue_id)
            else:
                async with self.pool.acquire() as own:
                    row = await own.fetchrow(sql, local_id, venue_id)
        except (asyncpg.DataError, ValueError):
            return None
        if row is None:
            return None
        values = {f: row[f] for f in PLATFORM_FIELDS[entity]}
        if "customer.tags" in values and values["customer.tags"] is not None:
            values["customer.tags"] = list(values["customer.tags"])
        return PlatformRecord(values, row["updated_at"], row["deleted_at"] is not None)

    async def write(self, write: InboundWrite, conn: asyncpg.Connection) -> datetime | None:
        """Write ``write.values`` on ``conn``; the new change time, or None when nothing was
        written (row gone, deleted, or changed since ``write.expected_at``)."""
        fields = sorted(write.values)
        sql = self._write_sql(write.entity_type, fields)
        updated: datetime | None = await conn.fetchval(
            sql, write.local_id, write.venue_id, write.expected_at,
            *[write.values[f] for f in fields])
        return updated


class TableSink:
    """The default sink: an ``UPDATE`` of the platform's row, ``updated_at`` bumped."""

    def __init__(self, records: PlatformRecords) -> None:
        self.records = records

    async def deliver(self, write: InboundWrite, conn: asyncpg.Connection | None = None
                      ) -> InboundDelivery:
        if write.entity_type not in PLATFORM_TABLES:
            raise LookupError(f"the platform has no table for {write.entity_type} records; "
                              "a plugin's syncd_inbound_change hook must deliver them")
        if conn is not None:
            return await self._deliver(write, conn)
        async with self.records.pool.acquire() as own, own.transaction():
            return await self._deliver(write, own)

    async def _deliver(self, write: InboundWrite, conn: asyncpg.Connection
                       ) -> InboundDelivery:
        updated = await self.records.write(write, conn)
        if updated is not None:
            return InboundDelivery(DeliveryStatus.APPLIED, updated_at=updated)
        now = await self.records.read(write.entity_type, write.venue_id, write.local_id,
                                      conn=conn)
        if now is None or now.deleted:
            return InboundDelivery(DeliveryStatus.GONE, "the platform record is gone")
        return InboundDelivery(DeliveryStatus.MOVED, "the platform record changed meanwhile")


class HookSink:
    """Offers each write to the plugins' ``syncd_inbound_change`` hook, then to ``fallback``.

    ``hook`` is the plugin manager's hook relay (:attr:`daemon.plugins.Plugins.hook`).
    """

    def __init__(self, hook: Any, fallback: Sink) -> None:
        self.hook = hook
        self.fallback = fallback

    async def deliver(self, write: InboundWrite, conn: asyncpg.Connection | None = None
                      ) -> InboundDelivery:
        answer = await await_me_maybe(self.hook.syncd_inbound_change(write=write))
        if answer is None:
            return await self.fallback.deliver(write, conn)
        if not isinstance(answer, InboundDelivery):
            raise TypeError("a syncd_inbound_change hook returned "
                            f"{type(answer).__name__}, not an InboundDelivery")
        return answer
