"""Where the platform's tables are and what their columns are called.

Defaults describe the platform schema in ``docs/platform-schema.md`` in the same database as
syncd. Environment variables use the prefix ``SYNCD_SOURCE_``::

    SYNCD_SOURCE_DATABASE_URL=postgresql://reader@platform-db/tickets
    SYNCD_SOURCE_SCHEMA=platform
    SYNCD_SOURCE_TABLES='{"events": "shows"}'
    SYNCD_SOURCE_COLUMNS='{"events.price_minor": "price_cents"}'
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from pydantic import AliasChoices, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["DEFAULT_COLUMNS", "SourceSettings", "render_query"]

#: Every column the source queries read, per table, in the default platform schema.
DEFAULT_COLUMNS: Mapping[str, tuple[str, ...]] = {
    "venues": ("id", "name", "venue_type", "timezone", "currency", "updated_at"),
    "events": ("id", "venue_id", "name", "description", "category", "status", "starts_at",
               "ends_at", "price_minor", "currency", "capacity", "url", "updated_at",
               "deleted_at"),
    "customers": ("id", "venue_id", "email", "first_name", "last_name", "phone",
                  "marketing_opt_in", "tags", "created_at", "updated_at", "deleted_at"),
    "orders": ("id", "venue_id", "customer_id", "event_id", "status", "total_minor",
               "fee_minor", "currency", "purchased_at", "updated_at", "deleted_at"),
    "tickets": ("id", "order_id", "ticket_type", "updated_at"),
    # Tickets sold at a provider's register (Square POS), written by syncd: see
    # docs/platform-schema.md and daemon.source.pos.
    "pos_sales": ("id", "venue_id", "event_id", "provider", "quantity", "source_key",
                  "observed_at", "created_at"),
}

_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_$]{0,62}$")
_PLACEHOLDER = re.compile(r"\{([a-z_]+)(?:\.([a-z_]+))?\}")


def _quote(ident: str) -> str:
    return '"' + ident.replace('"', '""') + '"'


class SourceSettings(BaseSettings):
    """Settings of the platform source."""

    model_config = SettingsConfigDict(env_prefix="SYNCD_SOURCE_", extra="ignore",
                                      populate_by_name=True)

    database_url: SecretStr | None = Field(
        default=None, description="Platform database URL. Unset: syncd's own database.")
    db_schema: str = Field(default="public",
                           validation_alias=AliasChoices("SYNCD_SOURCE_SCHEMA", "db_schema"),
                           description="Schema holding the platform tables.")
    tables: dict[str, str] = Field(default_factory=dict,
                                   description="Table renames: {default name: actual name}.")
    columns: dict[str, str] = Field(
        default_factory=dict,
        description="Column renames: {'table.column' (default names): actual column}.")
    chunk_size: int = Field(default=2000, ge=1, le=100_000,
                            description="Rows fetched per round trip from the cursor.")

    @field_validator("db_schema")
    @classmethod
    def _schema_ident(cls, value: str) -> str:
        if not _IDENT.match(value):
            raise ValueError(f"not a valid identifier: {value!r}")
        return value

    @field_validator("tables")
    @classmethod
    def _known_tables(cls, value: dict[str, str]) -> dict[str, str]:
        for key, actual in value.items():
            if key not in DEFAULT_COLUMNS:
                raise ValueError(f"unknown platform table {key!r}; known: "
                                 + ", ".join(sorted(DEFAULT_COLUMNS)))
            if not _IDENT.match(actual):
                raise ValueError(f"not a valid identifier: {actual!r}")
        return value

    @field_validator("columns")
    @classmethod
    def _known_columns(cls, value: dict[str, str]) -> dict[str, str]:
        for key, actual in value.items():
            table, _, column = key.partition(".")
            if column not in DEFAULT_COLUMNS.get(table, ()):
                raise ValueError(f"unknown platform column {key!r} (write it as table.column)")
            if not _IDENT.match(actual):
                raise ValueError(f"not a valid identifier: {actual!r}")
        return value


def render_query(template: str, settings: SourceSettings) -> str:
    """``template`` with ``{table}`` and ``{table.column}`` replaced by quoted identifiers."""

    def replace(match: re.Match[str]) -> str:
        table, column = match[1], match[2]
        if table not in DEFAULT_COLUMNS:
            raise KeyError(f"unknown table placeholder {table!r}")
        if column is None:
            actual = settings.tables.get(table, table)
            return f"{_quote(settings.db_schema)}.{_quote(actual)}"
        if column not in DEFAULT_COLUMNS[table]:
            raise KeyError(f"unknown column placeholder {table}.{column}")
        return _quote(settings.columns.get(f"{table}.{column}", column))

    return _PLACEHOLDER.sub(replace, template)
