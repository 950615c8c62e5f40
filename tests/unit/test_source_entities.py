"""Normalised platform entities and source settings."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from daemon.mapping import SOURCE_FIELDS
from daemon.provider import Entity
from daemon.source import Customer, Event, Money, Order, SourceSettings, Venue
from daemon.source.settings import render_query

VENUE = Venue("v1", "Laugh Factory", "comedy_club", "UTC", "USD")


def _paths(record: dict[str, object], prefix: str = "") -> set[str]:
    out = set()
    for key, value in record.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict):
            out |= _paths(value, path + ".")
        else:
            out.add(path)
    return out


def test_money_is_integer_minor_units_with_a_currency() -> None:
    assert Money(1250, "USD").amount == 1250
    with pytest.raises(TypeError):
        Money(12.5, "USD")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="ISO 4217"):
        Money(100, "dollars")


def test_records_have_exactly_the_fields_mappings_may_read() -> None:
    event = Event("e1", "Late Show", Money(2500, "USD"))
    product = {"event": event.as_source(), "venue": VENUE.as_source()}
    assert _paths(product) == set(SOURCE_FIELDS[Entity.PRODUCT])
    customer = Customer("c1", "a@x.org", "Ada", "Lovelace", tags=("vip",))
    record = {"customer": customer.as_source(), "venue": VENUE.as_source()}
    assert _paths(record) == set(SOURCE_FIELDS[Entity.CUSTOMER])
    assert customer.full_name == "Ada Lovelace"
    order = Order("o1", Money(5000, "USD"), Money(300, "USD"), 2, "paid")
    sale = {"order": order.as_source(), "customer": customer.as_source(with_tags=False),
            "event": {"id": "e1", "name": "Late Show", "starts_at": None},
            "venue": VENUE.as_source()}
    assert _paths(sale) == set(SOURCE_FIELDS[Entity.TRANSACTION])


def test_render_query_quotes_renamed_identifiers() -> None:
    settings = SourceSettings(db_schema="platform", tables={"events": "shows"},
                              columns={"events.price_minor": "price_cents"})
    sql = render_query("SELECT e.{events.price_minor}, e.{events.name} FROM {events} e",
                       settings)
    assert sql == 'SELECT e."price_cents", e."name" FROM "platform"."shows" e'


@pytest.mark.parametrize("bad", [
    {"db_schema": "public; DROP TABLE x"},
    {"tables": {"events": "shows\"; --"}},
    {"tables": {"nope": "x"}},
    {"columns": {"events.nope": "x"}},
    {"columns": {"events.name": "bad name"}},
])
def test_source_settings_refuse_anything_but_plain_identifiers(bad: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        SourceSettings(**bad)  # type: ignore[arg-type]
