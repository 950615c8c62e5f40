"""A plan as people read it in a terminal or a pull-request comment."""

from __future__ import annotations

import json
from typing import Any

from daemon.reconcile.plan import Change, Plan

__all__ = ["render_plan"]

_SIGN = {"create": "+", "update": "~", "disable": "-", "delete": "x"}
_WIDTH = 100


def _value(value: Any) -> str:
    text = json.dumps(value, sort_keys=True, default=str)
    return text if len(text) <= _WIDTH else text[: _WIDTH - 3] + "..."


def _change(change: Change) -> list[str]:
    where = f"  ({change.origin})" if change.origin else ""
    why = f" [{change.reason}]" if change.reason else ""
    lines = [f"{_SIGN[change.action]} {change.action} {change.kind} {change.label} "
             f"<{change.key}>{why}{where}"]
    if change.drift:
        lines.append("    drift: the database was changed directly; applying restores the "
                     "config")
    lines.extend(f"    {f.field}: {_value(f.before)} -> {_value(f.after)}"
                 for f in change.fields)
    return lines


def render_plan(plan: Plan, *, guard: str | None = None) -> str:
    """The plan, one change per block, and a summary line."""
    lines: list[str] = []
    if not plan.schema_ready:
        lines.append("note: the database is not migrated yet; everything is new")
    for change in plan.changes:
        lines.extend(_change(change))
    c = plan.counts()
    if plan.has_changes:
        lines.append("")
        lines.append(f"Plan: {c['create']} to create, {c['update']} to update, "
                     f"{c['disable']} to disable, {c['delete']} to delete; "
                     f"{c['unchanged']} unchanged.")
    else:
        lines.append(f"No changes: the database matches the config ({c['unchanged']} "
                     "unchanged).")
    if guard:
        lines.append(f"warning: apply will refuse without --force: {guard}")
    return "\n".join(lines)
