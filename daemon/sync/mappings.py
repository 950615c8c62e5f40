"""Which field mapping a run uses: template plus the integration's overrides, healed.

Order of choice for the template: the integration's ``template_id``; else the active
template for the venue's type (the integration's ``venue_type``, or one detected from the
venue's name as the replaced service did) with the highest usage; else the provider's
default template in the database; else the plugin's shipped default. The integration's
``field_mappings`` (``{entity: {target: rule | null}}``) are merged over it, null removing a
target. The first time a database template is applied to an integration its usage is
counted and the integration remembers it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import asyncpg
from pydantic import ValidationError

from daemon.logs import get_logger
from daemon.mapping import (
    EntityMapping,
    MappingProblem,
    merge_mappings,
    parse_entity_mapping,
    validate_mapping,
)
from daemon.provider import Capabilities, Entity, TemplateSpec
from daemon.sql import queries
from daemon.sync.healing import HealChange, heal_mapping

__all__ = ["ResolvedMapping", "TemplateChoice", "choose_template", "detect_venue_type",
           "resolve_mappings"]

log = get_logger("syncd.sync")
_Q = queries("sync.sql")

VENUE_TYPES = ("comedy_club", "music_venue", "theater", "festival", "standard")


def detect_venue_type(name: str | None) -> str:
    """A venue type guessed from the venue's name (the replaced service's rule)."""
    text = (name or "").lower()
    if "comedy" in text or "laugh" in text:
        return "comedy_club"
    if "music" in text or "concert" in text:
        return "music_venue"
    if "theater" in text or "theatre" in text:
        return "theater"
    if "festival" in text:
        return "festival"
    return "standard"


@dataclass(frozen=True, slots=True)
class TemplateChoice:
    """The template a mapping starts from."""

    id: str | None
    name: str
    origin: str  # "integration", "venue_type", "default", "plugin", "none"
    mappings: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class ResolvedMapping:
    """The mapping in force for one entity, with what healing changed and what is wrong."""

    entity: Entity
    rules: EntityMapping
    template: str
    healed: tuple[HealChange, ...] = ()
    problems: tuple[MappingProblem, ...] = field(default=())

    @property
    def ok(self) -> bool:
        return not self.problems and bool(self.rules)


async def choose_template(conn: asyncpg.Connection, integration: Mapping[str, Any],
                           venue_name: str | None, plugin_templates: Sequence[TemplateSpec]
                           ) -> TemplateChoice:
    """The template an integration's mappings start from (see the module's docstring)."""
    provider = integration["provider"]
    if integration["template_id"] is not None:
        row = await conn.fetchrow(_Q["template_by_id"], integration["template_id"])
        if row is not None:
            return TemplateChoice(str(row["id"]), row["name"], "integration", row["mappings"])
    venue_type = integration.get("venue_type") or "standard"
    if venue_type == "standard":
        venue_type = detect_venue_type(venue_name or integration.get("venue_name"))
    row = await conn.fetchrow(_Q["template_for_venue_type"], provider, venue_type)
    if row is not None:
        return TemplateChoice(str(row["id"]), row["name"], "venue_type", row["mappings"])
    row = await conn.fetchrow(_Q["default_template"], provider)
    if row is not None:
        return TemplateChoice(str(row["id"]), row["name"], "default", row["mappings"])
    shipped = ([t for t in plugin_templates if t.venue_type == venue_type]
               or [t for t in plugin_templates if t.is_default]
               or list(plugin_templates[:1]))
    if shipped:
        return TemplateChoice(None, shipped[0].name, "plugin", shipped[0].mappings)
    return TemplateChoice(None, "", "none", {})


async def count_template_use(conn: asyncpg.Connection, integration: Mapping[str, Any],
                             choice: TemplateChoice) -> bool:
    """Count a database template's use once per integration; True when counted now."""
    if choice.id is None:
        return False
    same = (integration["template_id"] is not None
            and str(integration["template_id"]) == choice.id)
    if same and integration["template_applied_at"] is not None:
        return False
    # Not fenced by the job's lease, and needs no fence: the statement applies a template
    # to an integration once (see template_applied), so a run that lost its lease can only
    # record the choice any run would, and never counts a use twice.
    async with conn.transaction():
        applied = await conn.fetchval(_Q["template_applied"], str(integration["venue_id"]),
                                      integration["provider"], choice.id)
        if applied is None:
            return False
        await conn.execute(_Q["template_used"], choice.id)
    log.info("sync.template_applied", venue_id=str(integration["venue_id"]),
             provider=integration["provider"], template=choice.name, origin=choice.origin)
    return True


def _entity_rules(raw: Any, entity: Entity, where: str) -> dict[str, Any]:
    if not isinstance(raw, Mapping):
        return {}
    section = raw.get(entity.value)
    if section is None:
        return {}
    if not isinstance(section, Mapping):
        raise ValueError(f"{where}: the {entity.value} mapping must be an object")
    return dict(section)


async def resolve_mappings(
    conn: asyncpg.Connection,
    integration: Mapping[str, Any],
    capabilities: Capabilities,
    plugin_templates: Sequence[TemplateSpec] = (),
    *,
    venue_name: str | None = None,
    count_usage: bool = True,
) -> dict[Entity, ResolvedMapping]:
    """The mapping in force for every entity the provider supports."""
    choice = await choose_template(conn, integration, venue_name, plugin_templates)
    if count_usage:
        await count_template_use(conn, integration, choice)
    overrides_raw = integration["field_mappings"] or {}
    resolved: dict[Entity, ResolvedMapping] = {}
    for entity, support in capabilities.entities.items():
        problems: list[MappingProblem] = []
        try:
            base = parse_entity_mapping(
                _entity_rules(choice.mappings, entity, f"template {choice.name!r}"))
            raw_over = _entity_rules(overrides_raw, entity, "field_mappings")
            removed = {t for t, r in raw_over.items() if r is None}
            over = parse_entity_mapping({t: r for t, r in raw_over.items() if r is not None})
            merged = merge_mappings(base, {**over, **dict.fromkeys(removed)})
        except (ValidationError, ValueError) as exc:
            problems.append(MappingProblem("", f"invalid {entity.value} mapping: "
                                           f"{str(exc).splitlines()[0]}"))
            resolved[entity] = ResolvedMapping(entity, {}, choice.name, (), tuple(problems))
            continue
        if not merged:
            resolved[entity] = ResolvedMapping(entity, {}, choice.name)
            continue
        healed, changes = heal_mapping(entity, merged, support)
        for change in changes:
            log.warning("sync.mapping_healed", venue_id=str(integration["venue_id"]),
                        provider=integration["provider"], entity=entity.value,
                        action=change.action, target=change.target, old=change.old,
                        new=change.new)
        problems.extend(validate_mapping(entity, healed, support))
        resolved[entity] = ResolvedMapping(entity, healed, choice.name, tuple(changes),
                                           tuple(problems))
    return resolved
