"""Applying a plan: one transaction, under an advisory lock, recorded as a revision."""

from __future__ import annotations

import getpass
import shutil
import subprocess
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from uuid import UUID

import asyncpg

from daemon.config.desired import DesiredIntegration, DesiredState, DesiredTemplate
from daemon.errors import SyncdError
from daemon.logs import get_logger
from daemon.reconcile.actual import fetch_templates
from daemon.reconcile.files import record_applied_files
from daemon.reconcile.plan import Change, Plan, disable_guard, plan_from_database
from daemon.sql import queries

__all__ = ["ApplyRefused", "ApplyResult", "apply_desired", "git_commit"]

log = get_logger("syncd.reconcile")
#: New integrations per INSERT statement (one JSON parameter each): measured at 20,000 new
#: rows, one statement a row spent 1.2 s encoding jsonb parameters one by one.
_INSERT_CHUNK = 2_000


class ApplyRefused(SyncdError):
    """The plan switches off too many integrations; ``--force`` overrides."""


@dataclass(frozen=True, slots=True)
class ApplyResult:
    plan: Plan
    #: The revision recorded, or None when nothing changed (not even the files).
    revision_id: int | None
    #: Integration rows inserted, updated or deleted.
    integration_rows_written: int
    template_rows_written: int


def git_commit(directory: Path) -> str | None:
    """The commit checked out where ``directory`` lives, ``+dirty`` when it has local edits."""
    git = shutil.which("git")
    if git is None:
        return None
    try:
        head = subprocess.run([git, "-C", str(directory), "rev-parse", "HEAD"],  # noqa: S603
                              capture_output=True, text=True, timeout=5, check=False)
        if head.returncode != 0:
            return None
        status = subprocess.run(  # noqa: S603 - fixed arguments, no shell
            [git, "-C", str(directory), "status", "--porcelain", "--", "."],
            capture_output=True, text=True, timeout=5, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    commit = head.stdout.strip()
    return f"{commit}+dirty" if status.returncode == 0 and status.stdout.strip() else commit


def _applied_by() -> str | None:
    try:
        return getpass.getuser()
    except (OSError, KeyError):
        return None


def _summary(plan: Plan, *, force: bool) -> dict[str, Any]:
    return {"prune": plan.prune, "force": force,
            "changes": [{"kind": c.kind, "action": c.action, "key": c.key,
                         **({"drift": True} if c.drift else {})}
                        for c in plan.changes[:500]],
            "truncated": len(plan.changes) > 500}


async def _apply_templates(conn: asyncpg.Connection, plan: Plan,
                           ids: dict[tuple[str, str], UUID]) -> int:
    q = queries("config.sql")
    written = 0
    # Rows giving up the default flag go first: one active default per provider at a time.
    changes = sorted(plan.of("template"), key=lambda c: 0 if c.action in (
        "disable", "delete") or _clears_default(c) else 1)
    set_default: list[UUID] = []
    for change in changes:
        tpl = change.desired
        if change.action == "disable":
            await conn.execute(q["deactivate_template"], change.row_id)
        elif change.action == "delete":
            await conn.execute(q["delete_template"], change.row_id)
        else:
            assert isinstance(tpl, DesiredTemplate)
            args = (tpl.description, tpl.venue_type, tpl.mappings, tpl.validation_rules)
            if change.action == "create":
                row_id = await conn.fetchval(q["insert_template"], tpl.provider, tpl.name,
                                             *args, False, tpl.spec_hash)
            else:
                assert change.row_id is not None
                row_id = change.row_id
                await conn.execute(q["update_template"], row_id, *args, False, tpl.spec_hash)
            ids[tpl.key] = row_id
            if tpl.is_default:
                set_default.append(row_id)
        written += 1
    for row_id in set_default:
        await conn.execute(q["set_template_default"], row_id)
    return written


def _clears_default(change: Change) -> bool:
    return any(f.field == "is_default" and f.before is True for f in change.fields)


async def _apply_integrations(conn: asyncpg.Connection, plan: Plan, revision_id: int,
                              ids: dict[tuple[str, str], UUID]) -> int:
    """Write the integration changes, batched per kind of statement."""
    q = queries("config.sql")
    inserts: list[list[Any]] = []  # one statement's worth at a time
    inserted = 0
    updates: list[tuple[Any, ...]] = []
    disables: list[tuple[Any, ...]] = []
    deletes: list[tuple[Any, ...]] = []
    uses: Counter[UUID] = Counter()
    for change in plan.of("integration"):
        want = change.desired
        if change.action == "disable":
            disables.append((change.row_id, revision_id))
            continue
        if change.action == "delete":
            deletes.append((change.row_id,))
            continue
        assert isinstance(want, DesiredIntegration)
        template_id = ids.get((want.provider, want.template)) if want.template else None
        if change.action == "create":
            inserts.append([str(want.venue_id), want.provider, want.venue_name,
                            want.venue_type, want.timezone, want.enabled, want.environment,
                            want.credentials, want.schedules, want.field_mappings,
                            want.options, str(template_id) if template_id else None,
                            want.spec_hash])
            if len(inserts) == _INSERT_CHUNK:
                await conn.execute(q["insert_integrations_json"], inserts, revision_id)
                inserted += len(inserts)
                inserts = []
            assigned = template_id is not None
        else:
            updates.append((change.row_id, want.venue_name, want.venue_type, want.timezone,
                            want.enabled, want.environment, want.credentials, want.schedules,
                            want.field_mappings, want.options, template_id, want.spec_hash,
                            revision_id))
            assigned = template_id is not None and any(
                f.field == "template" for f in change.fields)
        if assigned and template_id is not None:
            uses[template_id] += 1
    if inserts:
        await conn.execute(q["insert_integrations_json"], inserts, revision_id)
        inserted += len(inserts)
    for name, rows in (("update_integration", updates),
                       ("disable_integration", disables), ("delete_integration", deletes)):
        if rows:
            await conn.executemany(q[name], rows)
    if uses:
        await conn.executemany(q["record_template_use"], sorted(uses.items()))
    return inserted + len(updates) + len(disables) + len(deletes)


async def apply_desired(
    conn: asyncpg.Connection, desired: DesiredState, *, prune: bool = False,
    force: bool = False, max_disable_share: float = 0.5, source: str = "cli",
    commit: str | None = None,
) -> ApplyResult:
    """Make the database what ``desired`` declares, in one transaction.

    Concurrent applies are serialised by a transaction-scoped advisory lock; the plan is
    computed after taking it, so each apply sees the previous one's result.
    """
    q = queries("config.sql")
    async with conn.transaction():
        await conn.execute(q["lock_apply"])
        plan = await plan_from_database(conn, desired, prune=prune)
        if not plan.schema_ready:
            raise SyncdError("the database schema is not migrated; run syncd migrate")
        refusal = disable_guard(plan, max_disable_share)
        if refusal is not None and not force:
            raise ApplyRefused(f"refusing to apply: {refusal}; check the config directory, "
                               "or pass --force if this is intended")
        latest = await conn.fetchrow(q["latest_revision"])
        if not plan.has_changes and latest is not None and \
                latest["content_hash"] == desired.content_hash:
            # Nothing to write but, where the record of the files is missing or older than
            # this code, the record (the next plan then skips them).
            await record_applied_files(conn, desired, plan, latest["id"])
            return ApplyResult(plan, None, 0, 0)
        revision = await conn.fetchrow(q["insert_revision"], desired.content_hash, commit,
                                       source, _applied_by(), _summary(plan, force=force))
        revision_id: int = revision["id"]
        ids = {key: row.id for key, row in (await fetch_templates(conn)).items()}
        templates_written = await _apply_templates(conn, plan, ids)
        integrations_written = await _apply_integrations(conn, plan, revision_id, ids)
        await record_applied_files(conn, desired, plan, revision_id)
        counts = plan.counts()
        await conn.execute(q["finish_revision"], revision_id, counts["create"],
                           counts["update"], counts["disable"], counts["delete"],
                           counts["unchanged"], _summary(plan, force=force))
    log.info("config.applied", revision=revision_id, content_hash=desired.content_hash,
             git_commit=commit, source=source, **counts)
    return ApplyResult(plan, revision_id, integrations_written, templates_written)
