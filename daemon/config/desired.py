"""The desired state a config directory declares, in the shape of the database rows."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from uuid import UUID

from daemon.mapping import FieldRule

if TYPE_CHECKING:
    from daemon.config.applied import FileSources

__all__ = [
    "DesiredIntegration",
    "DesiredState",
    "DesiredTemplate",
    "Tombstone",
    "rule_json",
    "spec_hash",
]


#: One encoder for every hash (json.dumps builds one per call with these options: a fifth
#: of the time of hashing 20,000 rows). It holds no state between calls.
_SPEC_ENCODER = json.JSONEncoder(sort_keys=True, separators=(",", ":"), default=str)


def spec_hash(columns: Mapping[str, Any]) -> str:
    """A stable digest of a row's desired columns."""
    text = _SPEC_ENCODER.encode(columns)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def rule_json(rule: FieldRule) -> dict[str, Any]:
    """A mapping rule as stored: only what is set, with ``from`` for the source."""
    out: dict[str, Any] = {}
    if rule.source is not None:
        out["from"] = rule.source
    if rule.const is not None:
        out["const"] = rule.const
    if rule.default is not None:
        out["default"] = rule.default
    if rule.transforms:
        out["transforms"] = [{"name": t.name, **t.params} for t in rule.transforms]
    return out


@dataclass(frozen=True, slots=True)
class DesiredTemplate:
    """A row of ``field_mapping_templates`` as the config wants it."""

    provider: str
    name: str
    description: str
    venue_type: str | None
    mappings: dict[str, Any]
    validation_rules: dict[str, Any]
    is_default: bool
    #: The file it came from, or ``plugin:<provider>`` for a plugin's shipped template.
    origin: str

    @property
    def key(self) -> tuple[str, str]:
        return (self.provider, self.name)

    def columns(self) -> dict[str, Any]:
        return {
            "description": self.description,
            "venue_type": self.venue_type,
            "mappings": self.mappings,
            "validation_rules": self.validation_rules,
            "is_default": self.is_default,
            "is_active": True,
            "managed_by": "config",
        }

    @property
    def spec_hash(self) -> str:
        return spec_hash(self.columns())


@dataclass(frozen=True, slots=True)
class DesiredIntegration:
    """A row of ``integration_configs`` as the config wants it."""

    venue_id: UUID
    provider: str
    venue_name: str
    venue_type: str
    timezone: str
    enabled: bool
    environment: str
    credentials: dict[str, str]
    schedules: dict[str, dict[str, str]]
    #: The integration's overrides, ``{entity: {target: rule | None}}`` (None removes the
    #: template's target); the template itself is referenced by name.
    field_mappings: dict[str, Any]
    options: dict[str, Any]
    #: Name of the template the mapping started from (same provider), if any.
    template: str | None
    origin: str
    _hash: str = field(default="", compare=False, repr=False)

    @property
    def key(self) -> tuple[UUID, str]:
        return (self.venue_id, self.provider)

    def columns(self) -> dict[str, Any]:
        return {
            "venue_name": self.venue_name,
            "venue_type": self.venue_type,
            "timezone": self.timezone,
            "enabled": self.enabled,
            "environment": self.environment,
            "credentials": self.credentials,
            "schedules": self.schedules,
            "field_mappings": self.field_mappings,
            "options": self.options,
            "template": self.template,
            "managed_by": "config",
        }

    @property
    def spec_hash(self) -> str:
        return self._hash or spec_hash(self.columns())


@dataclass(frozen=True, slots=True)
class Tombstone:
    """``removed: true``: this integration is disabled on purpose."""

    venue_id: UUID
    provider: str
    origin: str

    @property
    def key(self) -> tuple[UUID, str]:
        return (self.venue_id, self.provider)


@dataclass(frozen=True, slots=True)
class DesiredState:
    """Everything a valid config directory declares."""

    integrations: tuple[DesiredIntegration, ...]
    templates: tuple[DesiredTemplate, ...]
    tombstones: tuple[Tombstone, ...]
    #: sha256 over every file's path and bytes: the revision's identity.
    content_hash: str
    files: int
    #: Which venue files were read and which taken as last applied (whose rows are then
    #: not in :attr:`integrations`: a plan knows them by digest). None: every file was read
    #: and nothing is recorded of them.
    sources: FileSources | None = field(default=None, compare=False, repr=False)
