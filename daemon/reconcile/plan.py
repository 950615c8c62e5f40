"""A plan: what applying the desired state would change, field by field.

The desired columns are compared with the row's actual columns (not only the stored spec
hash), so a change made directly in the database shows up as drift and is put back.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, Literal
from uuid import UUID

import asyncpg

from daemon.config.desired import DesiredIntegration, DesiredState, DesiredTemplate
from daemon.errors import SyncdError
from daemon.reconcile.actual import (
    ActualIntegration,
    ActualRow,
    ActualState,
    ActualTemplate,
    fetch_templates,
    row_pages,
    schema_ready,
)

__all__ = [
    "Change",
    "DisableRefused",
    "FieldChange",
    "Plan",
    "Planner",
    "diff_columns",
    "disable_guard",
    "make_plan",
    "plan_from_database",
    "same_columns",
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


class DisableRefused(SyncdError):
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
    #: Venue files taken as last applied that had to be read after all (a row of theirs
    #: differed or was missing): apply records them again.
    expanded: frozenset[str] = frozenset()

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
    (nearly every row of a plan is unchanged).

    Python's equality settles all but one thing: ``True == 1``, where diff_columns sees a
    change; :func:`_same_kinds` looks for that where a boolean or number could be.
    """
    return before == after and _same_kinds(before, after)


def _same_kinds(before: dict[str, Any], after: dict[str, Any]) -> bool:
    """Of two equal mappings: no value is a boolean on one side only (mappings nested
    in mappings included, as diff_columns compares them key by key)."""
    for key, a in after.items():
        if a.__class__ is str or a is None:
            continue  # the equal value on the other side is text, or None, too
        b = before[key]
        if isinstance(a, dict) and isinstance(b, dict):
            if not _same_kinds(b, a):
                return False
        elif isinstance(a, bool) != isinstance(b, bool):
            return False
    return True


#: A key missing on one side (a null value is not the same as no key: a null override
#: removes a template's target).
_ABSENT: Any = object()


def _by_key(change: Change) -> str:
    return change.key


def _label(d: DesiredIntegration) -> str:
    return f"{d.venue_name} / {d.provider}"


class Planner:
    """A plan built while the actual integration rows stream past, a page at a time.

    The desired state is held whole; each actual row is compared with it as it arrives and
    kept only as a change, so the memory of a plan does not grow with the rows that match.
    A row of a venue file the load took as last applied (:attr:`DesiredState.sources`) is
    compared by digest; one that differs, and one that is missing, have their file read
    after all when the rows have all passed (:meth:`finish`).
    """

    def __init__(self, desired: DesiredState, templates: dict[tuple[str, str], ActualTemplate],
                 *, prune: bool = False) -> None:
        self.desired = desired
        self.prune = prune
        self.wanted = {d.key: d for d in desired.integrations}
        self.assumed = desired.sources.assumed if desired.sources is not None else {}
        self.removed = {t.key: t for t in desired.tombstones}
        self.template_changes, self.unchanged = _template_changes(desired, templates, prune)
        self.seen: set[tuple[UUID, str]] = set()
        self.seen_assumed: set[tuple[UUID, str]] = set()
        #: Rows of assumed keys whose digest differs: compared once their file is read.
        self.differing: list[ActualIntegration] = []
        #: Sorted by key at the end: "<venue id>/<provider>", venue ids all of one length,
        #: orders as (venue id, provider).
        self.updates: list[Change] = []
        self.gone: list[Change] = []
        self.managed_enabled = 0

    def add(self, rows: Iterable[ActualIntegration | ActualRow]) -> None:
        """Compare a page of actual rows with the desired state."""
        for row in rows:
            ikey = row.key
            if row.managed and row.enabled:
                self.managed_enabled += 1
            want = self.wanted.get(ikey)
            if want is not None:
                self.seen.add(ikey)
                self._compare(row.full(), want)
                continue
            assumed = self.assumed.get(ikey)
            if assumed is not None:
                self.seen_assumed.add(ikey)
                if row.digest == assumed[0]:
                    self.unchanged += 1
                else:
                    self.differing.append(row.full())
                continue
            change = self._gone(row.full())
            if change is not None:
                self.gone.append(change)

    def _compare(self, row: ActualIntegration, want: DesiredIntegration) -> None:
        columns = want.columns()
        if same_columns(row.columns, columns):
            self.unchanged += 1
            return
        ikey = row.key
        fields = diff_columns(row.columns, columns)
        self.updates.append(Change(
            "integration", "update", f"{ikey[0]}/{ikey[1]}", _label(want),
            tuple(fields), drift=row.spec_hash == want.spec_hash, origin=want.origin,
            row_id=row.id, desired=want))

    def _gone(self, row: ActualIntegration) -> Change | None:
        ikey = row.key
        tomb = self.removed.get(ikey)
        if tomb is None and not row.managed:
            return None  # managed elsewhere (API): not ours to touch
        key_text = f"{ikey[0]}/{ikey[1]}"
        label = f"{row.columns['venue_name'] or ikey[0]} / {ikey[1]}"
        reason = "removed: true" if tomb is not None else "not in config"
        switches_off = tomb is None and row.enabled and row.managed
        origin = tomb.origin if tomb is not None else ""
        if self.prune:
            return Change("integration", "delete", key_text, label, reason=reason,
                          origin=origin, row_id=row.id, switches_off=switches_off)
        if row.enabled:
            return Change("integration", "disable", key_text, label,
                          (FieldChange("enabled", True, False),), reason=reason,
                          origin=origin, row_id=row.id, switches_off=switches_off)
        self.unchanged += 1
        return None

    def _expand(self) -> tuple[dict[tuple[UUID, str], DesiredIntegration], frozenset[str]]:
        """The desired rows of the skipped files a differing or missing row belongs to."""
        missing = [k for k in self.assumed if k not in self.seen_assumed] \
            if len(self.seen_assumed) < len(self.assumed) else []
        names = frozenset(self.assumed[k][1] for k in
                          (*(r.key for r in self.differing), *missing))
        sources = self.desired.sources
        if not names or sources is None:
            return {}, frozenset()
        found = {d.key: d for d in sources.expand(names)}
        for row in self.differing:
            want = found.get(row.key)
            if want is not None:
                self._compare(row, want)
            elif (change := self._gone(row)) is not None:
                self.gone.append(change)
        return {k: found[k] for k in missing if k in found}, names

    def finish(self, *, schema_ready: bool = True) -> Plan:
        created, expanded = self._expand()
        wanted = self.updates
        for mapping in (self.wanted, created):
            for ikey, want in mapping.items():
                if ikey not in self.seen:
                    wanted.append(Change(
                        "integration", "create", f"{ikey[0]}/{ikey[1]}", _label(want),
                        origin=want.origin, desired=want))
        wanted.sort(key=_by_key)
        self.gone.sort(key=_by_key)
        changes = (*self.template_changes, *wanted, *self.gone)
        return Plan(changes, self.unchanged, self.desired.content_hash,
                    self.managed_enabled, self.prune, schema_ready, expanded)


def _template_changes(desired: DesiredState, actual: dict[tuple[str, str], ActualTemplate],
                      prune: bool) -> tuple[list[Change], int]:
    changes: list[Change] = []
    unchanged = 0
    wanted_templates = {t.key: t for t in desired.templates}
    for key, tpl in sorted(wanted_templates.items()):
        key_text = f"{key[0]}/{key[1]}"
        trow = actual.get(key)
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
    for key, old in sorted(actual.items()):
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
    return changes, unchanged


def make_plan(desired: DesiredState, actual: ActualState, *, prune: bool = False) -> Plan:
    """Every change that makes ``actual`` what ``desired`` declares."""
    planner = Planner(desired, actual.templates, prune=prune)
    planner.add(actual.integrations.values())
    return planner.finish(schema_ready=actual.schema_ready)


async def plan_from_database(conn: asyncpg.Connection, desired: DesiredState, *,
                             prune: bool = False, page_size: int = 2_000) -> Plan:
    """:func:`make_plan` against the database, reading its integration rows a page at a time
    (inside a transaction when the caller wants one consistent view)."""
    if not await schema_ready(conn):
        return make_plan(desired, ActualState({}, {}, schema_ready=False), prune=prune)
    planner = Planner(desired, await fetch_templates(conn), prune=prune)
    async for page in row_pages(conn, page_size):
        planner.add(page)
    return planner.finish()


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
