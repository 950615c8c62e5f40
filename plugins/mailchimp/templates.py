"""Default Mailchimp mapping templates: a default and one per venue type."""

from __future__ import annotations

from typing import Any

from daemon.provider import TemplateSpec

__all__ = ["TEMPLATES"]

_CUSTOMER: dict[str, Any] = {
    "email_address": {"from": "customer.email", "transforms": ["strip", "lowercase"]},
    "marketing_opt_in": "customer.marketing_opt_in",
    "merge_fields.FNAME": "customer.first_name",
    "merge_fields.LNAME": "customer.last_name",
    "merge_fields.PHONE": "customer.phone",
    "tags": "customer.tags",
}

_PRODUCT: dict[str, Any] = {
    "title": "event.name",
    "description": "event.description",
    "url": "event.url",
    "vendor": "venue.name",
    "type": "event.category",
    "variants.0.price": {"from": "event.price", "transforms": ["minor_to_decimal"]},
    "variants.0.inventory_quantity": "event.capacity",
}

_ORDER: dict[str, Any] = {
    "currency_code": {"from": "order.currency", "transforms": ["uppercase"]},
    "order_total": {"from": "order.amount", "transforms": ["minor_to_decimal"]},
    "processed_at_foreign": {"from": "order.purchased_at", "transforms": ["iso_datetime"]},
    "financial_status": "order.status",
    "customer.email_address": {"from": "customer.email", "transforms": ["strip", "lowercase"]},
    "customer.first_name": "customer.first_name",
    "customer.last_name": "customer.last_name",
    "customer.opt_in_status": "customer.marketing_opt_in",
    "lines.0.product_id": "event.id",
    "lines.0.product_title": "event.name",
    "lines.0.quantity": "order.quantity",
    "lines.0.price": {"from": "order.amount", "transforms": ["minor_to_decimal"]},
}


def _template(name: str, venue_type: str | None, description: str,
              customer_extra: dict[str, Any] | None = None,
              product_extra: dict[str, Any] | None = None) -> TemplateSpec:
    return TemplateSpec(
        name=name,
        provider="mailchimp",
        venue_type=venue_type,
        is_default=venue_type is None,
        description=description,
        mappings={
            "customer": {**_CUSTOMER, **(customer_extra or {})},
            "product": {**_PRODUCT, **(product_extra or {})},
            "transaction": dict(_ORDER),
        },
    )


TEMPLATES: tuple[TemplateSpec, ...] = (
    _template("mailchimp-default", None,
              "Buyers as audience members with name and phone merge fields; events as store "
              "products; ticket sales as store orders."),
    _template("mailchimp-comedy-club", "comedy_club",
              "The default, with the comedy show category as product type and language en.",
              customer_extra={"language": {"const": "en"}}),
    _template("mailchimp-music-venue", "music_venue",
              "The default; events carry their category (genre) as product type.",
              product_extra={"handle": "event.id"}),
    _template("mailchimp-theater", "theater",
              "The default, with the event start as the product's publication time.",
              product_extra={"published_at_foreign": {"from": "event.starts_at",
                                                      "transforms": ["iso_datetime"]}}),
    _template("mailchimp-festival", "festival",
              "The default, with the full name split from one field when first/last are "
              "missing.",
              customer_extra={"merge_fields.FNAME": {"from": "customer.full_name",
                                                     "transforms": ["first_name"]},
                              "merge_fields.LNAME": {"from": "customer.full_name",
                                                     "transforms": ["last_name"]}}),
)
