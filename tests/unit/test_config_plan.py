"""Plans computed from in-memory desired and actual states."""

from __future__ import annotations

import copy
import json
import uuid
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from daemon.config.desired import DesiredIntegration, DesiredState
from daemon.reconcile.actual import ActualIntegration, ActualState
from daemon.reconcile.plan import diff_columns, disable_guard, make_plan, same_columns
from daemon.reconcile.render import render_plan


def desired_integration(n: int, **changes: Any) -> DesiredIntegration:
    base: dict[str, Any] = {
        "venue_id": uuid.UUID(int=n), "provider": "testprov", "venue_name": f"Venue {n}",
        "venue_type": "standard", "timezone": "UTC", "enabled": True,
        "environment": "production", "credentials": {"api_key": "env:K"},
        "schedules": {"product": {"cron": "0 * * * *", "lane": "NORMAL", "direction": "push"}},
        "field_mappings": {"product": {"title": {"from": "event.name"}}}, "options": {},
        "template": None, "origin": f"venues/{n}.yaml"}
    base.update(changes)
    return DesiredIntegration(**base)


def state(*items: DesiredIntegration) -> DesiredState:
    return DesiredState(tuple(items), (), (), "hash", len(items))


def actual_from(*items: DesiredIntegration, **overrides: Any) -> ActualState:
    rows = {}
    for d in items:
        columns = json.loads(json.dumps(d.columns()))
        columns.update(overrides)
        rows[d.key] = ActualIntegration(uuid.uuid4(), d.venue_id, d.provider, columns,
                                        d.spec_hash)
    return ActualState(rows, {})


def test_same_state_plans_nothing() -> None:
    items = [desired_integration(n) for n in range(3)]
    plan = make_plan(state(*items), actual_from(*items))
    assert not plan.has_changes
    assert plan.unchanged == 3
    assert "No changes" in render_plan(plan)


def test_create_update_disable_delete() -> None:
    a, b, c = (desired_integration(n) for n in range(3))
    changed = desired_integration(1, schedules={"product": {"cron": "*/5 * * * *",
                                                            "lane": "HIGH",
                                                            "direction": "push"}})
    new = desired_integration(9)
    plan = make_plan(state(a, changed, new), actual_from(a, b, c))
    assert [(ch.action, ch.key) for ch in plan.changes] == [
        ("update", f"{b.venue_id}/testprov"),
        ("create", f"{new.venue_id}/testprov"),
        ("disable", f"{c.venue_id}/testprov")]
    update = plan.changes[0]
    assert [(f.field, f.before, f.after) for f in update.fields] == [
        ("schedules.product.cron", "0 * * * *", "*/5 * * * *"),
        ("schedules.product.lane", "NORMAL", "HIGH")]
    assert not update.drift
    assert plan.changes[2].switches_off
    pruned = make_plan(state(a, changed, new), actual_from(a, b, c), prune=True)
    assert pruned.changes[2].action == "delete"
    text = render_plan(plan)
    assert "~ update integration Venue 1 / testprov" in text
    assert "schedules.product.cron: \"0 * * * *\" -> \"*/5 * * * *\"" in text
    assert "Plan: 1 to create, 1 to update, 1 to disable, 0 to delete; 1 unchanged." in text
    assert plan.as_dict()["counts"] == {"create": 1, "update": 1, "disable": 1, "delete": 0,
                                        "unchanged": 1}


def test_drift_is_flagged_when_the_row_kept_the_config_hash() -> None:
    a = desired_integration(1)
    plan = make_plan(state(a), actual_from(a, timezone="Europe/Paris"))
    (change,) = plan.changes
    assert change.drift
    assert [(f.field, f.before, f.after) for f in change.fields] == [
        ("timezone", "Europe/Paris", "UTC")]
    assert "drift" in render_plan(plan)


def test_a_null_override_differs_from_no_override() -> None:
    changes = diff_columns({"customer": {}}, {"customer": {"note": None}})
    assert [(f.field, f.before, f.after) for f in changes] == [("customer.note", None, None)]
    assert not diff_columns({"customer": {"note": None}}, {"customer": {"note": None}})


def test_bool_and_int_are_different_values() -> None:
    assert diff_columns({"x": 1}, {"x": True})
    assert not diff_columns({"x": 1}, {"x": 1.0})
    assert [f.field for f in diff_columns({"a": {"b": 1}}, {"a": {"c": 1}})] == ["a.b", "a.c"]


@pytest.mark.parametrize(("total", "removed", "share", "refused"), [
    (10, 0, 0.5, None), (10, 5, 0.5, None), (10, 6, 0.5, "6 of 10"),
    (10, 10, 1.0, "all 10"), (1, 1, 1.0, "all 1"), (4, 1, 0.2, "1 of 4"),
])
def test_disable_guard(total: int, removed: int, share: float, refused: str | None) -> None:
    items = [desired_integration(n) for n in range(total)]
    plan = make_plan(state(*items[removed:]), actual_from(*items))
    reason = disable_guard(plan, share)
    if refused is None:
        assert reason is None
    else:
        assert reason is not None
        assert refused in reason


def test_disabled_rows_do_not_count_and_do_not_churn() -> None:
    items = [desired_integration(n) for n in range(2)]
    plan = make_plan(state(), actual_from(*items, enabled=False))
    assert not plan.has_changes
    assert disable_guard(plan, 0.5) is None


def test_template_drift_is_flagged_only_when_the_row_kept_the_config_hash() -> None:
    from daemon.config.desired import DesiredTemplate
    from daemon.reconcile.actual import ActualTemplate

    tpl = DesiredTemplate("testprov", "comedy", "Comedy", "comedy_club",
                          {"product": {"title": "event.name"}}, {}, False, "templates/c.yaml")
    edited = {**tpl.columns(), "description": "edited in the database"}
    desired = DesiredState((), (tpl,), (), "hash", 1)
    # Changed in the database behind the config's back: the stored hash is the config's.
    row = ActualTemplate(uuid.uuid4(), "testprov", "comedy", edited, tpl.spec_hash)
    (change,) = make_plan(desired, ActualState({}, {tpl.key: row})).changes
    assert (change.kind, change.action, change.drift) == ("template", "update", True)
    # Changed in the config: the row holds the previous config's hash; no drift.
    row = ActualTemplate(uuid.uuid4(), "testprov", "comedy", edited, "previous-hash")
    (change,) = make_plan(desired, ActualState({}, {tpl.key: row})).changes
    assert (change.action, change.drift) == ("update", False)
    assert [(f.field, f.before, f.after) for f in change.fields] == [
        ("description", "edited in the database", "Comedy")]


_LEAVES = st.one_of(st.none(), st.booleans(), st.integers(-2, 2),
                    st.sampled_from([0.0, 1.0, 2.5]), st.sampled_from(["", "a", "1"]))
_VALUES = st.recursive(
    _LEAVES, lambda inner: st.lists(inner, max_size=3)
    | st.dictionaries(st.sampled_from(["a", "b", "c"]), inner, max_size=3), max_leaves=8)
_COLUMNS = st.dictionaries(st.sampled_from(["x", "y", "z"]), _VALUES, max_size=3)


@given(_COLUMNS, _COLUMNS)
def test_same_columns_agrees_with_diff_columns(before: dict[str, Any],
                                               after: dict[str, Any]) -> None:
    assert same_columns(before, after) == (diff_columns(before, after) == [])


@given(_COLUMNS)
def test_columns_are_the_same_as_themselves_and_a_copy(columns: dict[str, Any]) -> None:
    assert same_columns(columns, copy.deepcopy(columns))


@pytest.mark.parametrize(("before", "after"), [
    ({"x": {"a": 1}}, {"x": {"a": True}}), ({"x": {"a": False}}, {"x": {"a": 0.0}}),
    ({"x": True}, {"x": 1}), ({"x": {"a": {"b": 1}}}, {"x": {"a": {"b": True}}})])
def test_a_boolean_is_not_a_number(before: dict[str, Any], after: dict[str, Any]) -> None:
    assert diff_columns(before, after)
    assert not same_columns(before, after)
