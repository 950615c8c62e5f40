"""The platform fields syncd may write from a provider, and the setting that allows them.

Each writable field is named as the field mappings name it (``customer.first_name``, see
:data:`daemon.mapping.SOURCE_FIELDS`) and lives in one column of one platform table, named
by its default ``table.column`` (renames come from the source settings, as for reading).
Only columns listed in ``SYNCD_INBOUND_WRITABLE`` are ever written; by default the customer
columns a provider can sensibly correct.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from daemon.errors import SyncdError
from daemon.provider import FieldType
from daemon.settings import _split_names

__all__ = [
    "CONSENT_FIELDS",
    "DEFAULT_WRITABLE",
    "PLATFORM_FIELDS",
    "PLATFORM_TABLES",
    "InboundSettings",
    "PlatformField",
    "load_inbound_settings",
    "platform_field",
]


@dataclass(frozen=True, slots=True)
class PlatformField:
    """One platform field syncd can write: its mapping name, table, column and type."""

    path: str
    table: str
    column: str
    type: FieldType
    #: The column refuses NULL: a provider value of None is never written to it.
    required: bool = False

    @property
    def column_key(self) -> str:
        """``table.column`` by default names, as the allow-list and renames spell it."""
        return f"{self.table}.{self.column}"


def _fields(*fields: PlatformField) -> Mapping[str, PlatformField]:
    return {f.path: f for f in fields}


#: The platform table holding each entity's rows (keyed by ``id``, with ``venue_id``,
#: ``updated_at`` and ``deleted_at``).
PLATFORM_TABLES: Mapping[str, str] = {
    "customer": "customers",
    "product": "events",
    "transaction": "orders",
}

#: Every platform field an inbound mapping may name, per entity.
PLATFORM_FIELDS: Mapping[str, Mapping[str, PlatformField]] = {
    "customer": _fields(
        PlatformField("customer.email", "customers", "email", "email"),
        PlatformField("customer.first_name", "customers", "first_name", "string"),
        PlatformField("customer.last_name", "customers", "last_name", "string"),
        PlatformField("customer.phone", "customers", "phone", "string"),
        PlatformField("customer.marketing_opt_in", "customers", "marketing_opt_in", "boolean",
                      required=True),
        PlatformField("customer.tags", "customers", "tags", "list", required=True),
    ),
    "product": _fields(
        PlatformField("event.name", "events", "name", "string", required=True),
        PlatformField("event.description", "events", "description", "string"),
        PlatformField("event.category", "events", "category", "string"),
        PlatformField("event.status", "events", "status", "string", required=True),
        PlatformField("event.starts_at", "events", "starts_at", "datetime"),
        PlatformField("event.ends_at", "events", "ends_at", "datetime"),
        PlatformField("event.price", "events", "price_minor", "money", required=True),
        PlatformField("event.capacity", "events", "capacity", "integer"),
        PlatformField("event.url", "events", "url", "string"),
    ),
    "transaction": _fields(
        PlatformField("order.status", "orders", "status", "string", required=True),
    ),
}

#: The marketing consent field of an entity: what an unsubscribe withdraws.
CONSENT_FIELDS: Mapping[str, str] = {"customer": "customer.marketing_opt_in"}

#: Columns syncd may write unless ``SYNCD_INBOUND_WRITABLE`` says otherwise.
DEFAULT_WRITABLE: tuple[str, ...] = (
    "customers.marketing_opt_in", "customers.first_name", "customers.last_name",
    "customers.phone", "customers.tags",
)
_KNOWN_COLUMNS = {f.column_key for fields in PLATFORM_FIELDS.values() for f in fields.values()}


def platform_field(entity: str, path: str) -> PlatformField | None:
    """The writable platform field ``path`` of ``entity``, or None."""
    return PLATFORM_FIELDS.get(entity, {}).get(path)


class InboundSettings(BaseSettings):
    """Settings of inbound processing (environment prefix ``SYNCD_INBOUND_``)."""

    model_config = SettingsConfigDict(env_prefix="SYNCD_INBOUND_", extra="ignore")

    writable: Annotated[tuple[str, ...], NoDecode] = Field(
        default=DEFAULT_WRITABLE,
        description="Platform columns syncd may write from providers, as table.column "
        "(default names), a JSON list or comma-separated.")
    max_attempts: int = Field(default=5, ge=1, le=100,
                              description="Tries of a change that fails before it is a "
                              "dead letter.")
    retry_base_seconds: float = Field(default=30.0, gt=0,
                                      description="Wait before the first retry; doubles.")
    retry_cap_seconds: float = Field(default=3600.0, gt=0,
                                     description="Longest wait between two tries.")
    batch_size: int = Field(default=500, ge=1, le=100_000,
                            description="Most changes one processing pass takes.")

    @field_validator("writable", mode="before")
    @classmethod
    def _split(cls, value: object) -> object:
        return _split_names(value)

    @field_validator("writable")
    @classmethod
    def _known(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for column in value:
            if column not in _KNOWN_COLUMNS:
                raise ValueError(f"{column!r} is not a platform column syncd can write; "
                                 "known: " + ", ".join(sorted(_KNOWN_COLUMNS)))
        return value


def load_inbound_settings() -> InboundSettings:
    """The settings from the environment; :class:`~daemon.errors.SyncdError` with one line
    naming each bad value otherwise."""
    try:
        return InboundSettings()
    except ValidationError as exc:
        problems = "; ".join(
            f"SYNCD_INBOUND_{'.'.join(str(p) for p in e['loc']).upper() or 'SETTINGS'}: "
            f"{e['msg'].removeprefix('Value error, ')}" for e in exc.errors())
        raise SyncdError(f"invalid settings: {problems}") from None
