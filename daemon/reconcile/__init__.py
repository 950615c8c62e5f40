"""Reconciliation: desired config against database rows; plan, apply, and the watch loop."""

from daemon.reconcile.actual import ActualState, fetch_actual
from daemon.reconcile.apply import ApplyRefused, ApplyResult, apply_desired, git_commit
from daemon.reconcile.files import (
    fetch_applied_files,
    load_against_database,
    record_applied_files,
)
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
    "fetch_applied_files",
    "git_commit",
    "load_against_database",
    "make_plan",
    "plan_from_database",
    "record_applied_files",
    "render_plan",
]
