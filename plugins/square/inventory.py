"""Square inventory counts as syncd's inbound changes (shared by webhooks and the puller).

One ``InventoryCount`` (api.json) becomes one ``inventory`` change of the catalog item
variation it counts. Its dedupe key is the count's identity, not the delivery's: the
location, the variation and Square's ``calculated_at``. A webhook and a pull that saw the
same count, or a redelivered webhook, give one row in ``inbound_changes``. The payload
keeps Square's count and adds the observation contract of :mod:`daemon.inventory`
(``observed_quantity``, ``observed_at``, ``location_id``).
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from typing import Any

from daemon.inventory import parse_time
from daemon.provider import Entity, InboundChange

__all__ = ["count_change", "count_key", "whole_count"]


def whole_count(value: Any) -> int | None:
    """Square's decimal-string quantity as a whole number of tickets, or None."""
    if not isinstance(value, str):
        return None
    try:
        number = Decimal(value)
    except InvalidOperation:
        return None
    if not number.is_finite() or number != number.to_integral_value():
        return None
    return int(number)


def count_key(location: str, object_id: str, calculated_at: str) -> str:
    """The dedupe key of one observed count."""
    return f"inventory:{location}:{object_id}:{calculated_at}"


def count_change(count: Mapping[str, Any], *, account_id: str | None,
                 event_type: str) -> InboundChange | None:
    """The inbound change for one ``IN_STOCK`` count; None for anything else."""
    object_id, location = count.get("catalog_object_id"), count.get("location_id")
    calculated_at = count.get("calculated_at")
    if count.get("state", "IN_STOCK") != "IN_STOCK" or not isinstance(object_id, str) or \
            not object_id or not isinstance(location, str) or not location or \
            not isinstance(calculated_at, str):
        return None
    when = parse_time(calculated_at)
    if when is None:
        return None
    payload = {**count, "observed_quantity": whole_count(count.get("quantity")),
               "observed_at": when.isoformat(), "location_id": location}
    return InboundChange(provider="square", entity=Entity.INVENTORY, remote_id=object_id,
                         change="updated", dedupe_key=count_key(location, object_id,
                                                                calculated_at),
                         payload=payload, occurred_at=when, account_id=account_id,
                         event_type=event_type)
