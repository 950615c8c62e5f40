"""Default field-mapping templates for Stripe: one per venue type, ``standard`` the default."""

from __future__ import annotations

from typing import Any

from daemon.provider import TemplateSpec

__all__ = ["VENUE_UNIT_LABELS", "stripe_templates"]

#: The product's ``unit_label`` per venue type (Stripe allows 12 characters).
VENUE_UNIT_LABELS: dict[str, str] = {
    "standard": "ticket",
    "comedy_club": "ticket",
    "music_venue": "ticket",
    "theater": "seat",
    "festival": "pass",
}


def _mappings(unit_label: str) -> dict[str, Any]:
    return {
        "product": {
            "name": "event.name",
            "description": "event.description",
            "url": "event.url",
            "unit_label": {"const": unit_label},
            "price.unit_amount": "event.price",
            "price.currency": {"from": "event.currency", "transforms": ["lowercase"]},
            "metadata.event_id": "event.id",
            "metadata.venue_id": "venue.id",
            "metadata.starts_at": {"from": "event.starts_at", "transforms": ["iso_datetime"]},
            "metadata.category": "event.category",
        },
        "customer": {
            # Stripe's e-mail lookup is exact and case-sensitive: always send one form.
            "email": {"from": "customer.email", "transforms": ["strip", "lowercase"]},
            "name": "customer.full_name",
            "phone": "customer.phone",
            "metadata.customer_id": "customer.id",
            "metadata.venue_id": "venue.id",
            "metadata.marketing_opt_in": {"from": "customer.marketing_opt_in",
                                          "transforms": ["to_string"]},
        },
        "transaction": {
            "customer_email": {"from": "customer.email", "transforms": ["strip", "lowercase"]},
            "customer_name": "customer.full_name",
            "description": {"from": "event.name", "transforms": [{"name": "truncate",
                                                                   "length": 500}]},
            "amount": "order.amount",
            "currency": {"from": "order.currency", "transforms": ["lowercase"]},
            "metadata.order_id": "order.id",
            "metadata.event_id": "event.id",
            "metadata.venue_id": "venue.id",
        },
    }


def stripe_templates() -> tuple[TemplateSpec, ...]:
    """A template per venue type; ``standard`` is the default."""
    return tuple(
        TemplateSpec(
            name=f"stripe-{venue_type.replace('_', '-')}",
            provider="stripe",
            mappings=_mappings(label),
            venue_type=venue_type,
            is_default=venue_type == "standard",
            description=f"Stripe for {venue_type.replace('_', ' ')} venues: events as products "
                        f"priced per {label}, buyers as customers, sales as invoices paid out of "
                        "band",
        )
        for venue_type, label in VENUE_UNIT_LABELS.items()
    )
