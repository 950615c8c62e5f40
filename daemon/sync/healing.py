"""Mapping healing: repair targets and sources a provider or the platform no longer has.

A mapping written against an older field catalogue may name a target that was renamed
(``Item.Name`` became ``Name``) or a source that moved. Healing looks for the nearest valid
name (same name in another case, same last segment, one containing the other) and reports
every change it makes; a rule with no replacement is removed and reported too. Healing works
on the mapping in use for a run; the configuration in git is left for a person to fix.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from daemon.mapping import SOURCE_FIELDS, EntityMapping, FieldRule
from daemon.provider import Entity, EntitySupport

__all__ = ["HealChange", "find_alternative", "heal_mapping"]


@dataclass(frozen=True, slots=True)
class HealChange:
    """One change healing made."""

    entity: str
    target: str
    #: "retarget" (target renamed), "resource" (source renamed) or "remove".
    action: str
    old: str
    new: str | None

    def describe(self) -> str:
        if self.action == "remove":
            return f"{self.entity}: removed {self.target!r} ({self.old} is unknown)"
        what = "target" if self.action == "retarget" else "source"
        return f"{self.entity}: {what} {self.old!r} -> {self.new!r}"


def find_alternative(original: str, candidates: Iterable[str]) -> str | None:
    """The candidate nearest to ``original``, or None when nothing is near enough."""
    pool = sorted(candidates)
    lower = original.lower()
    for c in pool:
        if c.lower() == lower:
            return c
    last = lower.rsplit(".", 1)[-1]
    same_end = [c for c in pool if c.lower().rsplit(".", 1)[-1] == last]
    if len(same_end) == 1:
        return same_end[0]
    contained = [c for c in pool if len(c) > 2 and (c.lower() in lower or lower in c.lower())]
    if len(contained) == 1:
        return contained[0]
    return None


def heal_mapping(entity: Entity, mapping: Mapping[str, FieldRule], support: EntitySupport
                 ) -> tuple[EntityMapping, list[HealChange]]:
    """``mapping`` with unknown targets and sources repaired or removed, and the changes."""
    targets = {f.path for f in support.fields}
    sources = set(SOURCE_FIELDS[entity])
    healed: EntityMapping = {}
    changes: list[HealChange] = []
    for target in sorted(mapping):
        rule = mapping[target]
        new_target = target
        if target not in targets:
            alt = find_alternative(target, targets - set(mapping) - set(healed))
            if alt is None:
                changes.append(HealChange(entity.value, target, "remove", target, None))
                continue
            changes.append(HealChange(entity.value, target, "retarget", target, alt))
            new_target = alt
        if rule.source is not None and rule.source not in sources:
            alt = find_alternative(rule.source, sources)
            if alt is None:
                changes.append(HealChange(entity.value, new_target, "remove", rule.source, None))
                continue
            changes.append(HealChange(entity.value, new_target, "resource", rule.source, alt))
            rule = rule.model_copy(update={"source": alt})
        healed[new_target] = rule
    return healed, changes
