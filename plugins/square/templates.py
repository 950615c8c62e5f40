"""Default field-mapping templates for Square: one per venue type, ``standard`` the default."""

from __future__ import annotations

from typing import Any

from daemon.provider import TemplateSpec

__all__ = ["VENUE_VARIATIONS", "square_templates"]

#: What the single ticket variation is called, per venue type.
VENUE_VARIATIONS: dict[str, str] = {
    "standard": "General admission",
    "comedy_club": "Admission",
    "music_venue": "General admission",
    "theater": "Seat",
    "festival": "Festival pass",
}


def _mappings(variation: str) -> dict[str, Any]:
    return {
        "product": {
            "name": {"from": "event.name", "transforms": [{"name": "truncate", "length": 512}]},
            "description": "event.description",
            "variation.name": {"const": variation},
            "variation.sku": "event.id",
            "variation.track_inventory": {"const": True},
            "variation.price_money.amount": "event.price",
            "variation.price_money.currency": {"from": "event.currency",
                                               "transforms": ["uppercase"]},
        },
        "customer": {
            "email_address": {"from": "customer.email", "transforms": ["strip", "lowercase"]},
            "given_name": "customer.first_name",
            "family_name": "customer.last_name",
            "phone_number": "customer.phone",
            "reference_id": "customer.id",
        },
        "transaction": {
            "reference_id": {"from": "order.id", "transforms": [{"name": "truncate",
                                                                  "length": 40}]},
            "line_item.name": "event.name",
            "line_item.quantity": "order.quantity",
            "total_money.amount": "order.amount",
            "total_money.currency": {"from": "order.currency", "transforms": ["uppercase"]},
            "customer_email": {"from": "customer.email", "transforms": ["strip", "lowercase"]},
        },
        "inventory": {
            "quantity": "event.remaining",
            "pos_sold": "event.pos_sold",
        },
    }


def square_templates() -> tuple[TemplateSpec, ...]:
    """A template per venue type; ``standard`` is the default."""
    return tuple(
        TemplateSpec(
            name=f"square-{venue_type.replace('_', '-')}",
            provider="square",
            mappings=_mappings(variation),
            venue_type=venue_type,
            is_default=venue_type == "standard",
            description=f"Square for {venue_type.replace('_', ' ')} venues: events as catalog "
                        f"items with a '{variation}' variation, buyers as customers, sales as "
                        "orders paid externally, tickets left as inventory counts",
        )
        for venue_type, variation in VENUE_VARIATIONS.items()
    )
