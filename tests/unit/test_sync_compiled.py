"""A compiled mapping gives exactly what apply_mapping gives."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from daemon.mapping import SOURCE_FIELDS, apply_mapping, parse_entity_mapping
from daemon.plugins import load_plugins
from daemon.provider import Entity
from daemon.sync.compiled import compile_mapping

_VALUES = st.one_of(st.none(), st.text(max_size=8), st.integers(0, 10**6), st.booleans())


def _record(entity: Entity, values: dict[str, Any]) -> dict[str, Any]:
    record: dict[str, Any] = {}
    for path in SOURCE_FIELDS[entity]:
        head, _, tail = path.partition(".")
        record.setdefault(head, {})[tail] = values.get(path)
    return record


def _mappings() -> list[tuple[Entity, dict[str, Any]]]:
    out = []
    for provider in load_plugins().providers.values():
        for template in provider.default_templates():
            for entity in Entity:
                raw = template.mappings.get(entity.value)
                if raw:
                    out.append((entity, dict(raw)))
    out.append((Entity.CUSTOMER, {
        "a.b.0.c": "customer.email", "flat": {"const": "x"},
        "d": {"from": "customer.first_name", "default": "n/a",
              "transforms": ["lowercase", {"name": "truncate", "length": 3}]}}))
    return out


MAPPINGS = _mappings()


@pytest.mark.parametrize(("entity", "raw"), MAPPINGS)
@settings(max_examples=12, deadline=None)
@given(data=st.data())
def test_compiled_equals_apply_mapping(entity: Entity, raw: dict[str, Any],
                                       data: st.DataObject) -> None:
    rules = parse_entity_mapping(raw)
    values = {}
    for path, kind in SOURCE_FIELDS[entity].items():
        if kind in ("money", "integer"):
            values[path] = data.draw(st.one_of(st.none(), st.integers(0, 10**7)))
        elif kind in ("datetime", "date"):
            values[path] = data.draw(st.one_of(st.none(), st.datetimes().map(
                lambda d: d.isoformat())))
        elif kind == "boolean":
            values[path] = data.draw(st.one_of(st.none(), st.booleans()))
        elif kind == "list":
            values[path] = data.draw(st.lists(st.text(max_size=4), max_size=3))
        elif kind == "currency":
            values[path] = data.draw(st.sampled_from(["USD", "EUR", None]))
        else:
            values[path] = data.draw(st.one_of(st.none(), st.text(max_size=12)))
    record = _record(entity, values)
    try:
        expected = apply_mapping(rules, record)
    except Exception as exc:  # a transform refusing a value must refuse it both ways
        with pytest.raises(type(exc)):
            compile_mapping(rules)(record)
        return
    assert compile_mapping(rules)(record) == expected


def test_non_dict_nodes_take_the_general_path() -> None:
    rules = parse_entity_mapping({"x": "customer.tags.1"})
    record = {"customer": {"tags": ["a", "b"]}}
    assert compile_mapping(rules)(record) == apply_mapping(rules, record) == {"x": "b"}
