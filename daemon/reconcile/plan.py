"""A plan: what applying the desired state would change, field by field.

The desired columns are compared with the row's actual columns (not only the stored spec
hash), so a change made directly in the database shows up as drift and is put back.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Literal
from uuid import UUID

from daemon.config.desired import DesiredIntegration, DesiredState, DesiredTemplate
from daemon.reconcile.actual import ActualState

__all__ = [
    "Change",
    "DisableRefused",
    "FieldChange",
    "Plan",
    "diff_columns",
    "disable_guard",
    "make_plan",
]

Action = Literal["create", "update", "disable", "delete"]
Kind = Literal["integration", "template"]


@dataclass(frozen=True, slots=True)
class FieldChange:
    """One field's value before and after (``None`` where absent)."""

    field: str
    before: Any
    after: Any


@dataclass(frozen=True, slots=True)
class Change:
    kind: Kind
    action: Action
    #: ``<venue id>/<provider>`` for an integration, ``<provider>/<name>`` for a template.
    key: str
    label: str
    fields: tuple[FieldChange, ...] = ()
    #: The row differs from the config although its stored spec hash matches the config:
    #: someone changed the database directly.
    drift: bool = False
    origin: str = ""
    reason: str = ""
    row_id: UUID | None = None
    #: True when this change switches off an enabled integration the config stopped listing.
    switches_off: bool = False
    desired: DesiredIntegration | DesiredTemplate | None = field(default=None, compare=False,
                                                                 repr=False)

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"kind": self.kind, "action": self.action, "key": self.key,
                               "label": self.label}
        if self.fields:
            out["fields"] = [{"field": f.field, "before": f.before, "after": f.after}
                             for f in self.fields]
        if self.drift:
            out["drift"] = True
        if self.origin:
            out["origin"] = self.origin
        if self.reason:
            out["reason"] = self.reason
        return out


class DisableRefused(Exception):
    """Applying would switch off too many integrations at once."""


@dataclass(frozen=True, slots=True)
class Plan:
    changes: tuple[Change, ...]
    unchanged: int
    content_hash: str
    #: Enabled integrations the config manages now (the base of the disable share).
    managed_enabled: int
    prune: bool = False
    schema_ready: bool = True

    @property
    def has_changes(self) -> bool:
        return bool(self.changes)

    def counts(self) -> dict[str, int]:
        out = {"create": 0, "update": 0, "disable": 0, "delete": 0}
        for c in self.changes:
            out[c.action] += 1
        out["unchanged"] = self.unchanged
        return out

    def of(self, kind: Kind) -> Iterator[Change]:
        return (c for c in self.changes if c.kind == kind)

    @property
    def switching_off(self) -> int:
        return sum(1 for c in self.changes if c.switches_off)

    def as_dict(self) -> dict[str, Any]:
        return {"content_hash": self.content_hash, "counts": self.counts(),
                "prune": self.prune, "changes": [c.as_dict() for c in self.changes]}


def diff_columns(before: dict[str, Any], after: dict[str, Any], prefix: str = ""
                 ) -> list[FieldChange]:
    """Field-level differences; nested mappings are compared key by key."""
    out: list[FieldChange] = []
    for key in sorted(set(before) | set(after), key=str):
        path = f"{prefix}.{key}" if prefix else str(key)
        b, a = before.get(key, _ABSENT), after.get(key, _ABSENT)
        if isinstance(b, dict) and isinstance(a, dict):
            out.extend(diff_columns(b, a, path))
        elif b is _ABSENT or a is _ABSENT or b != a or \
                isinstance(a, bool) != isinstance(b, bool):
            out.append(FieldChange(path, None if b is _ABSENT else b,
                                   None if a is _ABSENT else a))
    return out


def same_columns(before: dict[str, Any], after: dict[str, Any]) -> bool:
    """True exactly when :func:`diff_columns` finds no difference, without building one
    (nearly every row of a plan is unchanged)."""
    if before.keys() != after.keys():
        return False
    for key, b in before.items():
        a = after[key]
        if isinstance(b, dict) and isinstance(a, dict):
            if not same_columns(b, a):
                return False
        elif b != a or isinstance(a, bool) != isinstance(b, bool):
            return False
    return True


#: A key missing on one side (a null value is not the same as no key: a null override
#: removes a template's target).
_ABSENT: Any = object()


def _label(d: DesiredIntegration) -> str:
    return f"{d.venue_name} / {d.provider}"


def make_plan(desired: DesiredState, actual: ActualState, *, prune: bool = False) -> Plan:
    """Every change that makes ``actual`` what ``desired`` declares."""
    changes: list[Change] = []
    unchanged = 0
    # templates
    wanted_templates = {t.key: t for t in desired.templates}
    for key, tpl in sorted(wanted_templates.items()):
        key_text = f"{key[0]}/{key[1]}"
        trow = actual.templates.get(key)
        if trow is None:
            changes.append(Change("template", "create", key_text, f"template {key_text}",
                                  origin=tpl.origin, desired=tpl))
            continue
        fields = diff_columns(trow.columns, tpl.columns())
        if fields:
            changes.append(Change("template", "update", key_text, f"template {key_text}",
                                  tuple(fields), drift=trow.spec_hash == tpl.spec_hash,
                                  origin=tpl.origin, row_id=trow.id, desired=tpl))
        else:
            unchanged += 1
    for key, old in sorted(actual.templates.items()):
        if key in wanted_templates or not old.managed:
            continue
        key_text = f"{key[0]}/{key[1]}"
        if prune:
            changes.append(Change("template", "delete", key_text, f"template {key_text}",
                                  reason="not in config", row_id=old.id))
        elif old.columns["is_active"]:
            changes.append(Change("template", "disable", key_text, f"template {key_text}",
                                  (FieldChange("is_active", True, False),),
                                  reason="not in config", row_id=old.id))
    # integrations
    wanted = {d.key: d for d in desired.integrations}
    removed = {t.key: t for t in desired.tombstones}
    managed_enabled = sum(1 for r in actual.integrations.values() if r.managed and r.enabled)
    for ikey, want in sorted(wanted.items(), key=lambda kv: (str(kv[0][0]), kv[0][1])):
        key_text = f"{ikey[0]}/{ikey[1]}"
        row = actual.integrations.get(ikey)
        if row is None:
            changes.append(Change("integration", "create", key_text, _label(want),
                                  origin=want.origin, desired=want))
            continue
        columns = want.columns()
        fields = [] if same_columns(row.columns, columns) else diff_columns(row.columns,
                                                                            columns)
        if fields:
            changes.append(Change("integration", "update", key_text, _label(want),
                                  tuple(fields), drift=row.spec_hash == want.spec_hash,
                                  origin=want.origin, row_id=row.id, desired=want))
        else:
            unchanged += 1
    for ikey, row in sorted(actual.integrations.items(), key=lambda kv: (str(kv[0][0]),
                                                                          kv[0][1])):
        if ikey in wanted:
            continue
        tomb = removed.get(ikey)
        if tomb is None and not row.managed:
            continue  # managed elsewhere (API): not ours to touch
        key_text = f"{ikey[0]}/{ikey[1]}"
        label = f"{row.columns['venue_name'] or ikey[0]} / {ikey[1]}"
        reason = "removed: true" if tomb is not None else "not in config"
        switches_off = tomb is None and row.enabled and row.managed
        origin = tomb.origin if tomb is not None else ""
        if prune:
            changes.append(Change("integration", "delete", key_text, label, reason=reason,
                                  origin=origin, row_id=row.id, switches_off=switches_off))
        elif row.enabled:
            changes.append(Change("integration", "disable", key_text, label,
                                  (FieldChange("enabled", True, False),), reason=reason,
                                  origin=origin, row_id=row.id, switches_off=switches_off))
        else:
            unchanged += 1
    return Plan(tuple(changes), unchanged, desired.content_hash, managed_enabled, prune,
                actual.schema_ready)


def disable_guard(plan: Plan, max_share: float) -> str | None:
    """Why applying ``plan`` must be refused without ``--force``, or None when it is safe."""
    off = plan.switching_off
    if off == 0:
        return None
    base = plan.managed_enabled
    if off >= base:
        return (f"this would switch off all {base} enabled integrations the config manages; "
                "a bad checkout or an empty config directory looks like this")
    limit = math.floor(base * max_share)
    if off > limit:
        return (f"this would switch off {off} of {base} enabled integrations, more than "
                f"the allowed share {max_share:.0%} ({limit})")
    return None
