"""Default QuickBooks mapping templates: a default and one per venue type."""

from __future__ import annotations

from typing import Any

from daemon.provider import TemplateSpec

__all__ = ["TEMPLATES"]

_ITEM: dict[str, Any] = {
    "Name": {"from": "event.name", "transforms": [{"name": "truncate", "length": 100}]},
    "Description": "event.description",
    "UnitPrice": {"from": "event.price", "transforms": ["minor_to_decimal"]},
    "Sku": "event.id",
}

_CUSTOMER: dict[str, Any] = {
    "DisplayName": {"from": "customer.full_name", "transforms": ["strip"]},
    "GivenName": "customer.first_name",
    "FamilyName": "customer.last_name",
    "PrimaryEmailAddr.Address": {"from": "customer.email", "transforms": ["strip", "lowercase"]},
    "PrimaryPhone.FreeFormNumber": "customer.phone",
}

_SALE: dict[str, Any] = {
    "DocNumber": {"from": "order.id", "transforms": [{"name": "truncate", "length": 21}]},
    "TxnDate": {"from": "order.purchased_at", "transforms": ["iso_date"]},
    "Line.0.Amount": {"from": "order.amount", "transforms": ["minor_to_decimal"]},
    "Line.0.Description": "event.name",
    "Line.0.SalesItemLineDetail.ItemRef.name": {
        "from": "event.name", "transforms": [{"name": "truncate", "length": 100}]},
    "Line.0.SalesItemLineDetail.Qty": "order.quantity",
    "CustomerRef.name": {"from": "customer.full_name", "transforms": ["strip"]},
    "BillEmail.Address": {"from": "customer.email", "transforms": ["strip", "lowercase"]},
}


def _template(name: str, venue_type: str | None, description: str,
              item_extra: dict[str, Any] | None = None,
              sale_extra: dict[str, Any] | None = None) -> TemplateSpec:
    return TemplateSpec(
        name=name,
        provider="quickbooks",
        venue_type=venue_type,
        is_default=venue_type is None,
        description=description,
        mappings={
            "product": {**_ITEM, **(item_extra or {})},
            "customer": dict(_CUSTOMER),
            "transaction": {**_SALE, **(sale_extra or {})},
        },
    )


TEMPLATES: tuple[TemplateSpec, ...] = (
    _template("quickbooks-default", None,
              "Events as service items, buyers as customers (DisplayName = full name), ticket "
              "sales as sales receipts numbered by order id."),
    _template("quickbooks-comedy-club", "comedy_club",
              "The default, with the ticket type in the private note.",
              sale_extra={"PrivateNote": "order.ticket_type"}),
    _template("quickbooks-music-venue", "music_venue",
              "The default, with the event category in the item description.",
              item_extra={"Description": "event.category"}),
    _template("quickbooks-theater", "theater",
              "The default, with the ticket type as the line description.",
              sale_extra={"Line.0.Description": "order.ticket_type"}),
    _template("quickbooks-festival", "festival",
              "The default; festival passes are non-taxable service items.",
              item_extra={"Taxable": {"const": False}}),
)
