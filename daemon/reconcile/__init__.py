"""Reconciliation: desired config against database rows; plan, apply, and the watch loop."""

from daemon.reconcile.actual import ActualState, fetch_actual
from daemon.reconcile.apply import ApplyRefused, ApplyResult, apply_desired, git_commit
from daemon.reconcile.plan import (
    Change,
    FieldChange,
    Plan,
    disable_guard,
    make_plan,
    plan_from_database,
)
from daemon.reconcile.render import render_plan
from daemon.reconcile.watch import Reconciler, ReconcileStatus

__all__ = [
    "ActualState",
    "ApplyRefused",
    "ApplyResult",
    "Change",
    "FieldChange",
    "Plan",
    "ReconcileStatus",
    "Reconciler",
    "apply_desired",
    "disable_guard",
    "fetch_actual",
    "git_commit",
    "make_plan",
    "plan_from_database",
    "render_plan",
]
