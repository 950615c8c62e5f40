"""Every mapping transform checked by value, through both ways a mapping is applied.

A property test elsewhere holds the compiled and the interpreted mapping equal; it cannot see
a transform that is wrong on both sides. These tables say what each transform must give, as
literal values: a transform added to :data:`daemon.mapping.TRANSFORMS` without a row here fails
:func:`test_every_transform_has_value_cases`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any

import pytest

from daemon.mapping import TRANSFORMS, apply_mapping, content_hash, parse_entity_mapping
from daemon.sync.compiled import compile_mapping

_EVENING = datetime(2026, 3, 7, 19, 30, 5, tzinfo=UTC)
_PLUS_TWO = timezone(timedelta(hours=2))

# (transform, parameters, input, expected output)
CASES: list[tuple[str, dict[str, Any], Any, Any]] = [
    ("lowercase", {}, "Ann@Example.COM", "ann@example.com"),
    ("uppercase", {}, "usd", "USD"),
    ("strip", {}, "  Ann Lee \t", "Ann Lee"),
    ("to_string", {}, True, "True"),
    ("to_string", {}, 1250, "1250"),
    ("to_int", {}, "42", 42),
    ("to_int", {}, 7, 7),
    # minor units to a decimal string, scaled by the currency's exponent
    ("minor_to_decimal", {}, 1250, "12.50"),
    ("minor_to_decimal", {}, 5, "0.05"),
    ("minor_to_decimal", {}, 0, "0.00"),
    ("minor_to_decimal", {}, -1999, "-19.99"),
    ("minor_to_decimal", {"exponent": 2}, 100000, "1000.00"),
    ("minor_to_decimal", {"exponent": 0}, 1250, "1250"),  # JPY: no minor unit
    ("minor_to_decimal", {"exponent": 3}, 1250, "1.250"),  # KWD: three decimals
    ("minor_to_decimal", {"exponent": 3}, 7, "0.007"),
    # a decimal string to minor units: rounded to the nearest unit, never truncated
    ("decimal_to_minor", {}, "12.50", 1250),
    ("decimal_to_minor", {}, "12.5", 1250),
    ("decimal_to_minor", {}, "12.349", 1235),
    ("decimal_to_minor", {}, "19.999", 2000),
    ("decimal_to_minor", {}, "0.009", 1),
    ("decimal_to_minor", {}, "-12.349", -1235),
    ("decimal_to_minor", {}, "7", 700),
    ("decimal_to_minor", {"exponent": 0}, "1250", 1250),
    ("decimal_to_minor", {"exponent": 0}, "1249.6", 1250),
    ("decimal_to_minor", {"exponent": 3}, "1.25", 1250),
    ("decimal_to_minor", {"exponent": 3}, "1.2346", 1235),
    # names
    ("first_name", {}, "Ann Marie Lee", "Ann"),
    ("first_name", {}, "  Cher  ", "Cher"),
    ("first_name", {}, "", ""),
    ("last_name", {}, "Ann Marie  Lee", "Marie Lee"),
    ("last_name", {}, "Cher", ""),
    ("last_name", {}, "", ""),
    # dates
    ("date_format", {}, _EVENING, "2026-03-07"),
    ("date_format", {"format": "Performance %d %b %Y %H:%M"}, _EVENING,
     "Performance 07 Mar 2026 19:30"),
    ("date_format", {"format": "%d/%m/%Y"}, "2026-03-07T19:30:05+00:00", "07/03/2026"),
    ("date_format", {"format": "%Y-%m-%d"}, date(2026, 12, 31), "2026-12-31"),
    ("iso_date", {}, _EVENING, "2026-03-07"),
    ("iso_date", {}, datetime(2026, 3, 7, 23, 30, tzinfo=_PLUS_TWO), "2026-03-07"),
    ("iso_date", {}, "2026-03-07T19:30:05+00:00", "2026-03-07"),
    ("iso_date", {}, date(2026, 1, 2), "2026-01-02"),
    ("iso_datetime", {}, _EVENING, "2026-03-07T19:30:05+00:00"),
    ("iso_datetime", {}, datetime(2026, 3, 7, 19, 30, tzinfo=_PLUS_TWO),
     "2026-03-07T19:30:00+02:00"),
    ("iso_datetime", {}, date(2026, 1, 2), "2026-01-02"),
    ("iso_datetime", {}, "2026-03-07T19:30:05Z", "2026-03-07T19:30:05Z"),
    # truncation: a length in characters, shorter text untouched
    ("truncate", {"length": 3}, "abcdef", "abc"),
    ("truncate", {"length": 6}, "abcdef", "abcdef"),
    ("truncate", {"length": 10}, "abc", "abc"),
    ("truncate", {"length": 2}, "épée", "ép"),
    ("truncate", {"length": 4}, 123456, "1234"),
    # Mailchimp's member id: MD5 hex of the trimmed, lower-cased address
    ("md5", {}, "ann@example.com", "257c57037d384ae37ea27a07e8a01665"),
    ("md5", {}, "  Ann@Example.COM ", "257c57037d384ae37ea27a07e8a01665"),
    ("md5", {}, "ANN@EXAMPLE.COM", "257c57037d384ae37ea27a07e8a01665"),
]


def _interpreted(rules: Any, record: Mapping[str, Any]) -> dict[str, Any]:
    return apply_mapping(rules, record)


def _compiled(rules: Any, record: Mapping[str, Any]) -> dict[str, Any]:
    return compile_mapping(rules)(record)


PATHS: dict[str, Callable[[Any, Mapping[str, Any]], dict[str, Any]]] = {
    "interpreted": _interpreted,
    "compiled": _compiled,
}


def _case_id(case: tuple[str, dict[str, Any], Any, Any]) -> str:
    name, params, value, _ = case
    extra = ",".join(f"{k}={v}" for k, v in params.items())
    return f"{name}[{extra}]({value!r})"


@pytest.mark.parametrize("path", sorted(PATHS))
@pytest.mark.parametrize("case", CASES, ids=[_case_id(c) for c in CASES])
def test_transform_gives_the_documented_value(
    case: tuple[str, dict[str, Any], Any, Any], path: str,
) -> None:
    name, params, value, expected = case
    # Both a flat target and a nested one: the compiled path assigns them differently.
    rules = parse_entity_mapping({
        "flat": {"from": "customer.value", "transforms": [{"name": name, **params}]},
        "nested.0.out": {"from": "customer.value", "transforms": [{"name": name, **params}]},
    })
    out = PATHS[path](rules, {"customer": {"value": value}})
    assert out == {"flat": expected, "nested": [{"out": expected}]}
    assert type(out["flat"]) is type(expected)


def test_every_transform_has_value_cases() -> None:
    assert {name for name, *_ in CASES} == set(TRANSFORMS)


@pytest.mark.parametrize("path", sorted(PATHS))
def test_transforms_chain_in_the_order_written(path: str) -> None:
    rules = parse_entity_mapping({
        "a": {"from": "customer.value", "transforms": ["strip", {"name": "truncate",
                                                                "length": 3}, "uppercase"]},
        "b": {"from": "customer.value", "transforms": [{"name": "truncate", "length": 3},
                                                       "strip", "uppercase"]},
    })
    assert PATHS[path](rules, {"customer": {"value": "  abcdef"}}) == {"a": "ABC", "b": "A"}


@pytest.mark.parametrize("path", sorted(PATHS))
def test_defaults_and_constants_go_through_the_transforms(path: str) -> None:
    rules = parse_entity_mapping({
        "price": {"from": "event.price", "default": 0, "transforms": ["minor_to_decimal"]},
        "tag": {"const": " VIP ", "transforms": ["strip", "lowercase"]},
        "gone": "event.missing",
    })
    assert PATHS[path](rules, {"event": {"price": None}}) == {"price": "0.00", "tag": "vip"}


def test_content_hash_does_not_depend_on_key_order() -> None:
    one = {"name": "Gala", "price": {"amount": 1250, "currency": "USD"},
           "tags": ["b", "a"], "at": _EVENING}
    other = {"at": _EVENING, "tags": ["b", "a"],
             "price": {"currency": "USD", "amount": 1250}, "name": "Gala"}
    assert list(one) != list(other)
    assert content_hash(one) == content_hash(other)
    # ... but on every value, list order included.
    assert content_hash(one) != content_hash({**one, "tags": ["a", "b"]})
    assert content_hash(one) != content_hash({**one, "price": {"amount": 1250,
                                                                "currency": "EUR"}})


@pytest.mark.parametrize("path", sorted(PATHS))
def test_reordering_a_template_keeps_every_records_hash(path: str) -> None:
    raw = {"name": "event.name", "price.amount": "event.price",
           "price.currency": {"from": "event.currency", "transforms": ["lowercase"]},
           "metadata.id": "event.id"}
    record = {"event": {"name": "Gala", "price": 1250, "currency": "USD", "id": "e1"}}
    forward = PATHS[path](parse_entity_mapping(raw), record)
    backward = PATHS[path](parse_entity_mapping(dict(reversed(raw.items()))), record)
    assert content_hash(forward) == content_hash(backward)


@pytest.mark.parametrize("path", sorted(PATHS))
def test_list_indexes_read_an_element_or_nothing(path: str) -> None:
    rules = parse_entity_mapping({"first": "customer.tags.0", "third": "customer.tags.2",
                                  "deep": "customer.tags.0.x"})
    assert PATHS[path](rules, {"customer": {"tags": ["vip", "late"]}}) == {"first": "vip"}
