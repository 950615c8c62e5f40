"""The actual state: integration and template rows as the database holds them."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any
from uuid import UUID

import asyncpg

from daemon.sql import queries

__all__ = [
    "ActualIntegration",
    "ActualRow",
    "ActualState",
    "ActualTemplate",
    "fetch_actual",
    "fetch_templates",
    "integration_pages",
    "row_pages",
    "schema_ready",
]


@dataclass(frozen=True, slots=True)
class ActualIntegration:
    id: UUID
    venue_id: UUID
    provider: str
    columns: dict[str, Any]
    spec_hash: str | None
    #: Digest of the config columns as the database holds them (see ``integrations_page``).
    digest: str | None = None

    @property
    def key(self) -> tuple[UUID, str]:
        return (self.venue_id, self.provider)

    @property
    def enabled(self) -> bool:
        return self.columns["enabled"] is True

    @property
    def managed(self) -> bool:
        return str(self.columns["managed_by"]) == "config"

    def full(self) -> ActualIntegration:
        return self


@dataclass(frozen=True, slots=True)
class ActualRow:
    """An integration row as a page gives it: its config columns still one JSON text,
    decoded (:meth:`full`) only when the row is compared, with their digest."""

    id: str
    venue_id: UUID
    provider: str
    enabled: bool
    managed: bool
    spec_hash: str | None
    text: str
    digest: str

    @property
    def key(self) -> tuple[UUID, str]:
        return (self.venue_id, self.provider)

    def full(self) -> ActualIntegration:
        columns = dict(zip(_INTEGRATION_COLUMNS, json.loads(self.text), strict=True))
        return ActualIntegration(UUID(self.id), self.venue_id, self.provider, columns,
                                 self.spec_hash, self.digest)


@dataclass(frozen=True, slots=True)
class ActualTemplate:
    id: UUID
    provider: str
    name: str
    columns: dict[str, Any]
    spec_hash: str | None

    @property
    def managed(self) -> bool:
        return str(self.columns["managed_by"]) == "config"


@dataclass(frozen=True, slots=True)
class ActualState:
    integrations: dict[tuple[UUID, str], ActualIntegration]
    templates: dict[tuple[str, str], ActualTemplate]
    #: False when the schema is not migrated yet (a fresh database): everything is new.
    schema_ready: bool = True


_INTEGRATION_COLUMNS = ("venue_name", "venue_type", "timezone", "enabled", "environment",
                        "credentials", "schedules", "field_mappings", "options", "template",
                        "managed_by")
_TEMPLATE_COLUMNS = ("description", "venue_type", "mappings", "validation_rules",
                     "is_default", "is_active", "managed_by")


async def row_pages(conn: asyncpg.Connection, page_size: int = 2_000
                    ) -> AsyncIterator[list[ActualRow]]:
    """Every integration row, a page at a time in (venue_id, provider) order.

    The next page is asked for before this one is handed over, so that Postgres builds it
    while the caller compares this one (two cores: 0.2-0.4 s of a 20,000-row plan).
    """
    sql = queries("config.sql")["integrations_page"]

    async def fetch(after: tuple[str | None, str]) -> list[list[Any]]:
        rows: list[list[Any]] = json.loads(await conn.fetchval(sql, *after, page_size))
        return rows

    pending: asyncio.Task[list[list[Any]]] | None = asyncio.ensure_future(fetch((None, "")))
    try:
        while pending is not None:
            rows = await pending
            pending = None
            if len(rows) == page_size:  # there may be more
                pending = asyncio.ensure_future(fetch((rows[-1][1], rows[-1][2])))
            if not rows:
                return
            page = [ActualRow(row_id, UUID(venue), provider, enabled is True,
                              managed_by == "config", spec, text, digest)
                    for row_id, venue, provider, enabled, managed_by, spec, text, digest
                    in rows]
            del rows
            yield page
    finally:
        if pending is not None:  # the caller stopped early: let the query finish, unread
            with contextlib.suppress(Exception):
                await pending


async def integration_pages(conn: asyncpg.Connection, page_size: int = 2_000
                            ) -> AsyncIterator[list[ActualIntegration]]:
    """Every integration row with its columns decoded, a page at a time (:func:`row_pages`)."""
    async for page in row_pages(conn, page_size):
        yield [row.full() for row in page]


async def schema_ready(conn: asyncpg.Connection) -> bool:
    """False when the schema is not migrated yet (a fresh database)."""
    ready: bool = await conn.fetchval(queries("config.sql")["schema_ready"])
    return ready


async def fetch_templates(conn: asyncpg.Connection) -> dict[tuple[str, str], ActualTemplate]:
    """Every template row."""
    templates: dict[tuple[str, str], ActualTemplate] = {}
    for row in await conn.fetch(queries("config.sql")["list_templates"]):
        columns = {c: row[c] for c in _TEMPLATE_COLUMNS}
        if columns["validation_rules"] is None:
            columns["validation_rules"] = {}
        if columns["description"] is None:
            columns["description"] = ""
        templates[(row["provider"], row["name"])] = ActualTemplate(
            row["id"], row["provider"], row["name"], columns, row["spec_hash"])
    return templates


async def fetch_actual(conn: asyncpg.Connection) -> ActualState:
    """Every integration and template row, held at once (see :func:`integration_pages`
    for a page at a time)."""
    if not await schema_ready(conn):
        return ActualState({}, {}, schema_ready=False)
    integrations: dict[tuple[UUID, str], ActualIntegration] = {}
    async for page in integration_pages(conn):
        integrations.update((row.key, row) for row in page)
    return ActualState(integrations, await fetch_templates(conn))
