"""Stripe client helpers: form encoding and natural product ids."""

from __future__ import annotations

from urllib.parse import urlencode

from plugins.stripe.client import encode_form, product_id_for
from plugins.stripe.emulator import decode_form


def test_nested_form_encoding_round_trips_through_the_emulator_decoder() -> None:
    params = {"name": "Show", "active": False, "metadata": {"event_id": "e1", "skip": None},
              "default_price_data": {"unit_amount": 2500, "currency": "usd"},
              "expand": ["default_price"]}
    pairs = encode_form(params)
    assert ("active", "false") in pairs
    assert ("metadata[event_id]", "e1") in pairs
    assert ("expand[]", "default_price") in pairs
    assert all("skip" not in k for k, _ in pairs)
    decoded = decode_form(dict(pairs))
    assert decoded["default_price_data"] == {"unit_amount": "2500", "currency": "usd"}
    assert decoded["expand"] == ["default_price"]
    assert urlencode(pairs).startswith("name=Show&active=false")


def test_product_ids_are_deterministic_and_distinct() -> None:
    a = product_id_for("venue-1", "event-1")
    assert a == product_id_for("venue-1", "event-1")
    assert a != product_id_for("venue-2", "event-1")
    assert a.startswith("syncd_")
    assert len(a) == len("syncd_") + 24
