"""Every shipped template, from a literal platform row to the literal payload it sends.

The rows go through the source reader's row-to-record functions and the template through
both ways a mapping is applied (the compiled one is what a sync runs). Prices are where the
templates differ most: Square and Stripe take minor units (1250), QuickBooks and Mailchimp a
decimal string ("12.50"). A template shipped without an expected payload here fails
:func:`test_every_shipped_template_has_a_fixed_output`.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from daemon.config._yaml import parse_yaml
from daemon.mapping import apply_mapping, parse_entity_mapping
from daemon.plugins import load_plugins
from daemon.source.entities import Venue
from daemon.source.reader import _customer, _inventory, _product, _transaction
from daemon.sync.compiled import compile_mapping

ROOT = Path(__file__).resolve().parents[2]
VENUE_ID = "0b6c7d2e-5f4a-4b3c-9d8e-1f2a3b4c5d6e"
VENUE = Venue(id=VENUE_ID, name="Laugh Track", venue_type="comedy_club",
              timezone="America/Chicago", currency="USD")
STARTS = datetime(2026, 3, 7, 19, 30, tzinfo=UTC)

# Rows as the platform's tables hold them (the columns daemon/source/queries.sql selects).
EVENT_ROW: dict[str, Any] = {
    "id": "evt-1001", "name": "Late Show", "price_minor": 1250, "currency": "usd",
    "description": "Stand-up, two sets", "category": "comedy", "status": "on_sale",
    "starts_at": STARTS, "ends_at": datetime(2026, 3, 7, 22, 0, tzinfo=UTC), "capacity": 120,
    "url": "https://tickets.example/e/1001", "updated_at": None, "changed_at": None,
    "deleted_at": None,
}
CUSTOMER_ROW: dict[str, Any] = {
    "id": "cus-42", "email": "Ann.Lee@Example.COM", "first_name": "Ann",
    "last_name": "Lee Smith", "phone": "+15550100", "marketing_opt_in": True,
    "tags": ["vip", "late"], "created_at": None, "updated_at": None, "changed_at": None,
    "deleted_at": None,
}
STOCK_ROW: dict[str, Any] = {
    "id": "evt-1001", "name": "Late Show", "status": "on_sale", "starts_at": STARTS,
    "capacity": 120, "sold": 37, "pos_sold": 5, "changed_at": None, "deleted_at": None,
}
ORDER_ROW: dict[str, Any] = {
    "id": "ord-0007", "total_minor": 3750, "fee_minor": 150, "currency": "USD", "quantity": 3,
    "status": "paid", "ticket_type": "Balcony",
    "purchased_at": datetime(2026, 3, 1, 18, 5, 9, tzinfo=UTC), "updated_at": None,
    "customer_id": "cus-42", "customer_email": "Ann.Lee@Example.COM",
    "customer_first_name": "Ann", "customer_last_name": "Lee Smith",
    "customer_phone": "+15550100", "customer_marketing_opt_in": True,
    "customer_created_at": None, "customer_updated_at": None,
    "event_id": "evt-1001", "event_name": "Late Show", "event_starts_at": STARTS,
    "changed_at": None, "deleted_at": None,
}


def _records() -> dict[str, dict[str, Any]]:
    venue = VENUE.as_source()
    return {
        "product": dict(_product(EVENT_ROW, venue).data),  # type: ignore[arg-type]
        "customer": dict(_customer(CUSTOMER_ROW, venue).data),  # type: ignore[arg-type]
        "transaction": dict(_transaction(ORDER_ROW, venue).data),  # type: ignore[arg-type]
        "inventory": dict(_inventory(STOCK_ROW, venue).data),  # type: ignore[arg-type]
    }


# --- expected payloads --------------------------------------------------------------------

SQUARE_PRODUCT = {
    "name": "Late Show",
    "description": "Stand-up, two sets",
    "variation": {"name": "General admission", "sku": "evt-1001", "track_inventory": True,
                  "price_money": {"amount": 1250, "currency": "USD"}},
}
# 120 seats, 37 sold online, 5 at the register: 78 left.
SQUARE_STOCK = {"quantity": 78, "pos_sold": 5}
SQUARE_CUSTOMER = {
    "email_address": "ann.lee@example.com", "given_name": "Ann", "family_name": "Lee Smith",
    "phone_number": "+15550100", "reference_id": "cus-42",
}
SQUARE_SALE = {
    "reference_id": "ord-0007",
    "line_item": {"name": "Late Show", "quantity": 3},
    "total_money": {"amount": 3750, "currency": "USD"},
    "customer_email": "ann.lee@example.com",
}


def _square(variation: str) -> dict[str, dict[str, Any]]:
    product = {**SQUARE_PRODUCT,
               "variation": {**SQUARE_PRODUCT["variation"], "name": variation}}
    return {"product": product, "customer": SQUARE_CUSTOMER, "transaction": SQUARE_SALE,
            "inventory": SQUARE_STOCK}


STRIPE_PRODUCT = {
    "name": "Late Show",
    "description": "Stand-up, two sets",
    "url": "https://tickets.example/e/1001",
    "unit_label": "ticket",
    "price": {"unit_amount": 1250, "currency": "usd"},
    "metadata": {"event_id": "evt-1001", "venue_id": VENUE_ID,
                 "starts_at": "2026-03-07T19:30:00+00:00", "category": "comedy"},
}
STRIPE_CUSTOMER = {
    "email": "ann.lee@example.com",
    "name": "Ann Lee Smith",
    "phone": "+15550100",
    "metadata": {"customer_id": "cus-42", "venue_id": VENUE_ID, "marketing_opt_in": "True"},
}
STRIPE_SALE = {
    "customer_email": "ann.lee@example.com",
    "customer_name": "Ann Lee Smith",
    "description": "Late Show",
    "amount": 3750,
    "currency": "usd",
    "metadata": {"order_id": "ord-0007", "event_id": "evt-1001", "venue_id": VENUE_ID},
}


def _stripe(unit_label: str) -> dict[str, dict[str, Any]]:
    return {"product": {**STRIPE_PRODUCT, "unit_label": unit_label},
            "customer": STRIPE_CUSTOMER, "transaction": STRIPE_SALE}


MAILCHIMP_PRODUCT = {
    "title": "Late Show",
    "description": "Stand-up, two sets",
    "url": "https://tickets.example/e/1001",
    "vendor": "Laugh Track",
    "type": "comedy",
    "variants": [{"price": "12.50", "inventory_quantity": 120}],
}
MAILCHIMP_CUSTOMER = {
    "email_address": "ann.lee@example.com",
    "marketing_opt_in": True,
    "merge_fields": {"FNAME": "Ann", "LNAME": "Lee Smith", "PHONE": "+15550100"},
    "tags": ["vip", "late"],
}
MAILCHIMP_ORDER = {
    "currency_code": "USD",
    "order_total": "37.50",
    "processed_at_foreign": "2026-03-01T18:05:09+00:00",
    "financial_status": "paid",
    "customer": {"email_address": "ann.lee@example.com", "first_name": "Ann",
                 "last_name": "Lee Smith", "opt_in_status": True},
    "lines": [{"product_id": "evt-1001", "product_title": "Late Show", "quantity": 3,
               "price": "37.50"}],
}
MAILCHIMP = {"product": MAILCHIMP_PRODUCT, "customer": MAILCHIMP_CUSTOMER,
             "transaction": MAILCHIMP_ORDER}

QBO_ITEM = {"Name": "Late Show", "Description": "Stand-up, two sets", "UnitPrice": "12.50",
            "Sku": "evt-1001"}
QBO_CUSTOMER = {
    "DisplayName": "Ann Lee Smith",
    "GivenName": "Ann",
    "FamilyName": "Lee Smith",
    "PrimaryEmailAddr": {"Address": "ann.lee@example.com"},
    "PrimaryPhone": {"FreeFormNumber": "+15550100"},
}
QBO_SALE = {
    "DocNumber": "ord-0007",
    "TxnDate": "2026-03-01",
    "Line": [{"Amount": "37.50", "Description": "Late Show",
              "SalesItemLineDetail": {"ItemRef": {"name": "Late Show"}, "Qty": 3}}],
    "CustomerRef": {"name": "Ann Lee Smith"},
    "BillEmail": {"Address": "ann.lee@example.com"},
}
QBO = {"product": QBO_ITEM, "customer": QBO_CUSTOMER, "transaction": QBO_SALE}

EXPECTED: dict[str, dict[str, dict[str, Any]]] = {
    "square-standard": _square("General admission"),
    "square-comedy-club": _square("Admission"),
    "square-music-venue": _square("General admission"),
    "square-theater": _square("Seat"),
    "square-festival": _square("Festival pass"),
    "stripe-standard": _stripe("ticket"),
    "stripe-comedy-club": _stripe("ticket"),
    "stripe-music-venue": _stripe("ticket"),
    "stripe-theater": _stripe("seat"),
    "stripe-festival": _stripe("pass"),
    "mailchimp-default": MAILCHIMP,
    "mailchimp-comedy-club": {**MAILCHIMP,
                              "customer": {**MAILCHIMP_CUSTOMER, "language": "en"}},
    "mailchimp-music-venue": {**MAILCHIMP,
                              "product": {**MAILCHIMP_PRODUCT, "handle": "evt-1001"}},
    "mailchimp-theater": {**MAILCHIMP, "product": {
        **MAILCHIMP_PRODUCT, "published_at_foreign": "2026-03-07T19:30:00+00:00"}},
    # first/last name split from the full name "Ann Lee Smith"
    "mailchimp-festival": MAILCHIMP,
    "quickbooks-default": QBO,
    "quickbooks-comedy-club": {**QBO, "transaction": {**QBO_SALE, "PrivateNote": "Balcony"}},
    "quickbooks-music-venue": {**QBO, "product": {**QBO_ITEM, "Description": "comedy"}},
    "quickbooks-theater": {**QBO, "transaction": {
        **QBO_SALE, "Line": [{**QBO_SALE["Line"][0], "Description": "Balcony"}]}},
    "quickbooks-festival": {**QBO, "product": {**QBO_ITEM, "Taxable": False}},
    # config/templates/
    "mailchimp-comedy-newsletter": {
        **MAILCHIMP,
        "customer": {**MAILCHIMP_CUSTOMER, "merge_fields": {
            "FNAME": "Ann", "LNAME": "Lee Smith", "PHONE": "+15550100",
            "VENUE": "Laugh Track", "SOURCE": "ticketing"}},
    },
    "quickbooks-invoices": {
        "product": QBO_ITEM,
        "customer": QBO_CUSTOMER,
        "transaction": {
            **QBO_SALE,
            "Line": [{**QBO_SALE["Line"][0], "Description": "Performance 07 Mar 2026 19:30"}],
            "BillEmail": {"Address": "Ann.Lee@Example.COM"},  # mapped without transforms
            "CurrencyRef": {"value": "USD"},
            "PrivateNote": "Synced by syncd",
        },
    },
}


def _shipped() -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for provider in load_plugins().providers.values():
        for template in provider.default_templates():
            out[template.name] = dict(template.mappings)
    for path in sorted((ROOT / "config" / "templates").glob("*.yaml")):
        data = parse_yaml(path.read_text()).data
        out[data["name"]] = dict(data["mappings"])
    return out


SHIPPED = _shipped()


def test_every_shipped_template_has_a_fixed_output() -> None:
    assert sorted(SHIPPED) == sorted(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_template_maps_the_row_to_the_literal_payload(name: str) -> None:
    records = _records()
    mappings = SHIPPED[name]
    assert sorted(mappings) == sorted(EXPECTED[name])
    for entity, expected in EXPECTED[name].items():
        rules = parse_entity_mapping(mappings[entity])
        assert compile_mapping(rules)(records[entity]) == expected, entity
        assert apply_mapping(rules, records[entity]) == expected, entity


def test_quickbooks_unit_price_is_the_decimal_of_the_minor_units() -> None:
    # The issue's own example, spelled out: 1,250 minor units is "12.50".
    rules = parse_entity_mapping(SHIPPED["quickbooks-default"]["product"])
    assert compile_mapping(rules)(_records()["product"])["UnitPrice"] == "12.50"


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_every_template_sends_e_mail_addresses_trimmed(name: str) -> None:
    # The bundled templates strip e-mail addresses everywhere (Stripe's lookup by e-mail is
    # exact; Mailchimp keys members by the MD5 of the trimmed, lower-cased address).
    padded = {**_records()}
    padded["customer"] = {**padded["customer"], "customer": {
        **padded["customer"]["customer"], "email": "  ann.lee@example.com "}}
    padded["transaction"] = {**padded["transaction"], "customer": {
        **padded["transaction"]["customer"], "email": "  ann.lee@example.com "}}
    for entity, raw in SHIPPED[name].items():
        rules = parse_entity_mapping(raw)
        sent = compile_mapping(rules)(padded[entity])
        for target, rule in rules.items():
            if rule.source == "customer.email":
                value: Any = sent
                for part in target.split("."):
                    value = value[int(part)] if part.isdigit() else value[part]
                assert value == value.strip(), (entity, target, value)
