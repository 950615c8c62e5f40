"""The actual state: integration and template rows as the database holds them."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any
from uuid import UUID

import asyncpg

from daemon.sql import queries

__all__ = ["ActualIntegration", "ActualState", "ActualTemplate", "fetch_actual"]


@dataclass(frozen=True, slots=True)
class ActualIntegration:
    id: UUID
    venue_id: UUID
    provider: str
    columns: dict[str, Any]
    spec_hash: str | None

    @property
    def enabled(self) -> bool:
        return self.columns["enabled"] is True

    @property
    def managed(self) -> bool:
        return str(self.columns["managed_by"]) == "config"


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


async def fetch_actual(conn: asyncpg.Connection) -> ActualState:
    """Every integration and template row (one query each)."""
    q = queries("config.sql")
    if not await conn.fetchval(q["schema_ready"]):
        return ActualState({}, {}, schema_ready=False)
    integrations: dict[tuple[UUID, str], ActualIntegration] = {}
    # One JSON text for every row (see the query): decoded at once, then taken apart.
    rows = json.loads(await conn.fetchval(q["list_integrations_json"]))
    while rows:
        row_id, venue, provider, *columns, spec = rows.pop()
        venue_id = UUID(venue)
        integrations[(venue_id, provider)] = ActualIntegration(
            UUID(row_id), venue_id, provider, dict(zip(_INTEGRATION_COLUMNS, columns,
                                                       strict=True)), spec)
    templates: dict[tuple[str, str], ActualTemplate] = {}
    for row in await conn.fetch(q["list_templates"]):
        columns = {c: row[c] for c in _TEMPLATE_COLUMNS}
        if columns["validation_rules"] is None:
            columns["validation_rules"] = {}
        if columns["description"] is None:
            columns["description"] = ""
        templates[(row["provider"], row["name"])] = ActualTemplate(
            row["id"], row["provider"], row["name"], columns, row["spec_hash"])
    return ActualState(integrations, templates)
