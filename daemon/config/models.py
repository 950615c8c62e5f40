"""Pydantic models of the two config file kinds: a venue file and a template file.

A venue file declares one venue and its integrations; a template file one field-mapping
template. Unknown keys are errors everywhere. Checks that need the loaded plugins (provider
names, field catalogues, options models, credential keys) are made by
:mod:`daemon.config.loader`; these models check shape and self-contained values.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Annotated, Any, Literal
from uuid import UUID
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    WithJsonSchema,
    field_validator,
)
from pydantic_core import PydanticCustomError

from daemon.inbound.rules import InboundRule
from daemon.mapping import FieldRule
from daemon.provider import Direction, Entity

__all__ = [
    "LANES",
    "VENUE_TYPES",
    "CredentialRef",
    "IntegrationSpec",
    "Lane",
    "MappingSpec",
    "ScheduleSpec",
    "TemplateFile",
    "ValidationRules",
    "VenueFile",
    "VenueSpec",
    "VenueType",
    "detect_venue_type",
]

Lane = Literal["CRITICAL", "HIGH", "NORMAL", "LOW"]
LANES: tuple[str, ...] = ("CRITICAL", "HIGH", "NORMAL", "LOW")
VenueType = Literal["comedy_club", "music_venue", "theater", "festival", "standard"]
VENUE_TYPES: tuple[str, ...] = ("comedy_club", "music_venue", "theater", "festival", "standard")

_ENV = re.compile(r"^env:[A-Za-z_][A-Za-z0-9_]*$")
_FILE = re.compile(r"^file:\S.*$")
_NAME = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,79}$")


def detect_venue_type(name: str) -> str:
    """The venue type a name suggests, as the platform always guessed it."""
    lowered = name.lower()
    if "comedy" in lowered or "laugh" in lowered:
        return "comedy_club"
    if "music" in lowered or "concert" in lowered:
        return "music_venue"
    if "theater" in lowered or "theatre" in lowered:
        return "theater"
    if "festival" in lowered:
        return "festival"
    return "standard"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# --- values ---------------------------------------------------------------------------------


def _check_ref(value: str) -> str:
    if value == "oauth" or _ENV.match(value) or _FILE.match(value):
        return value
    if value.startswith("env:"):
        raise PydanticCustomError(
            "bad_env_ref", "an env: reference needs a variable name (letters, digits, _)")
    # Never echo the value: it may be the secret itself.
    raise PydanticCustomError(
        "literal_secret", "a credential must be a reference, not a literal value")


#: ``oauth`` (tokens from the vault), ``env:NAME`` or ``file:PATH``.
CredentialRef = Annotated[str, AfterValidator(_check_ref)]


def _credentials_short_form(value: Any) -> Any:
    if value == "oauth":
        return {"token": "oauth"}
    if isinstance(value, str):
        raise PydanticCustomError(
            "credentials_form", "credentials must be 'oauth' or a map of key: reference")
    return value


Credentials = Annotated[
    dict[str, CredentialRef],
    BeforeValidator(_credentials_short_form),
    WithJsonSchema({
        "anyOf": [
            {"const": "oauth"},
            {"type": "object", "additionalProperties": {
                "type": "string", "pattern": r"^(oauth|env:[A-Za-z_][A-Za-z0-9_]*|file:\S.*)$"}},
        ],
        "description": "'oauth', or a map of credential key to 'env:NAME' / 'file:PATH'.",
    }),
]


@lru_cache(maxsize=4096)
def _valid_cron(value: str) -> bool:
    return len(value.split()) == 5 and bool(croniter.is_valid(value))


def _check_cron(value: str) -> str:
    if not _valid_cron(value):
        raise PydanticCustomError("bad_cron", "invalid cron expression '{cron}'",
                                  {"cron": value})
    return value


def _check_timezone(value: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise PydanticCustomError("bad_timezone", "unknown time zone '{tz}'",
                                  {"tz": value}) from None
    return value


def _check_name(value: str) -> str:
    if not _NAME.match(value):
        raise PydanticCustomError(
            "bad_name", "a template name is lower-case letters, digits, '.', '_' or '-'")
    return value


# --- venue file -----------------------------------------------------------------------------


class ScheduleSpec(_Strict):
    """When and how one entity syncs."""

    cron: Annotated[str, AfterValidator(_check_cron)] = Field(
        description="Five-field cron expression, evaluated in the venue's time zone.")
    lane: Lane = Field(default="NORMAL", description="Queue lane of the scheduled jobs.")
    direction: Direction = Field(default=Direction.PUSH,
                                 description="push, pull or both.")
    on_delete: Literal["delete", "archive", "leave"] | None = Field(
        default=None, description="What a record deleted at the source does at the provider "
        "(unset: leave it).")


class MappingSpec(_Strict):
    """A template by name plus per-entity overrides (a null override removes a target)."""

    template: Annotated[str, AfterValidator(_check_name)] | None = Field(
        default=None, description="Template name; unset: by venue type, then the default.")
    overrides: dict[Entity, dict[str, FieldRule | None]] = Field(default_factory=dict)
    inbound: dict[Entity, dict[str, InboundRule | None]] = Field(
        default_factory=dict,
        description="Per entity, platform field -> provider field (the template's inbound "
        "rules with these on top; null removes one). syncd writes to the platform only "
        "what this maps.")


class IntegrationSpec(_Strict):
    """One venue's use of one provider."""

    provider: str = Field(description="A loaded provider plugin's name.")
    enabled: StrictBool = True
    environment: Literal["production", "sandbox"] = "production"
    credentials: Credentials = Field(default_factory=dict)
    schedules: dict[Entity, ScheduleSpec] = Field(default_factory=dict)
    mapping: MappingSpec = Field(default_factory=MappingSpec)
    options: dict[str, Any] = Field(default_factory=dict)
    removed: StrictBool = Field(default=False,
                          description="Tombstone: disable this integration on purpose.")


class VenueSpec(_Strict):
    id: UUID
    name: str = Field(min_length=1, max_length=200)
    type: VenueType | None = Field(default=None, description="Unset: detected from the name.")
    timezone: Annotated[str, AfterValidator(_check_timezone)] = "UTC"

    @property
    def venue_type(self) -> str:
        return self.type or detect_venue_type(self.name)


class VenueFile(_Strict):
    """``config/venues/<venue>.yaml``."""

    venue: VenueSpec
    integrations: list[IntegrationSpec] = Field(default_factory=list)


# --- template file --------------------------------------------------------------------------


class ValidationRules(_Strict):
    """Extra checks an integration using the template must pass."""

    required: tuple[str, ...] = Field(
        default=(), description="Targets the effective mapping must set.")


class TemplateFile(_Strict):
    """``config/templates/<name>.yaml``."""

    name: Annotated[str, AfterValidator(_check_name)]
    provider: str
    venue_type: VenueType | None = None
    description: str = ""
    default: StrictBool = Field(default=False,
                          description="The provider's fallback template (one per provider).")
    mappings: dict[Entity, dict[str, FieldRule]] = Field(default_factory=dict)
    inbound: dict[Entity, dict[str, InboundRule]] = Field(
        default_factory=dict,
        description="Per entity, platform field -> provider field: what integrations using "
        "the template take back from the provider.")
    validation_rules: dict[Entity, ValidationRules] = Field(default_factory=dict)

    @field_validator("mappings")
    @classmethod
    def _not_empty(cls, value: dict[Entity, dict[str, FieldRule]]
                   ) -> dict[Entity, dict[str, FieldRule]]:
        if not value:
            raise PydanticCustomError("empty_mappings", "a template maps at least one entity")
        return value
