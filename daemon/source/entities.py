"""Normalised platform entities, and the records mappings read from them.

Money is an integer in minor units with its ISO 4217 currency, never a float. Each entity
turns into the nested record :data:`daemon.mapping.SOURCE_FIELDS` describes:

- product: ``{"event": {...}, "venue": {...}}``
- customer: ``{"customer": {...}, "venue": {...}}``
- transaction: ``{"order": {...}, "customer": {...}, "event": {...}, "venue": {...}}``
- inventory: ``{"event": {id, name, status, starts_at, capacity, sold, pos_sold,
  remaining}, "venue": {...}}``
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from daemon.provider import Entity

__all__ = [
    "Customer",
    "Event",
    "Money",
    "Order",
    "SourceRecord",
    "Stock",
    "Venue",
]


@dataclass(frozen=True, slots=True)
class Money:
    """An amount in minor units (cents) of ``currency``."""

    amount: int
    currency: str

    def __post_init__(self) -> None:
        if not isinstance(self.amount, int) or isinstance(self.amount, bool):
            raise TypeError(f"money amounts are integers in minor units, got {self.amount!r}")
        if len(self.currency) != 3 or not self.currency.isalpha():
            raise ValueError(f"not an ISO 4217 currency code: {self.currency!r}")


@dataclass(frozen=True, slots=True)
class Venue:
    id: str
    name: str
    venue_type: str | None
    timezone: str
    currency: str
    updated_at: datetime | None = None

    def as_source(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "timezone": self.timezone,
                "type": self.venue_type}


@dataclass(frozen=True, slots=True)
class Event:
    id: str
    name: str
    price: Money
    description: str | None = None
    category: str | None = None
    status: str | None = None
    starts_at: datetime | None = None
    ends_at: datetime | None = None
    capacity: int | None = None
    url: str | None = None
    updated_at: datetime | None = None

    def as_source(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "description": self.description,
                "category": self.category, "status": self.status,
                "starts_at": self.starts_at, "ends_at": self.ends_at,
                "price": self.price.amount, "currency": self.price.currency,
                "capacity": self.capacity, "url": self.url, "updated_at": self.updated_at}


@dataclass(frozen=True, slots=True)
class Customer:
    id: str
    email: str | None
    first_name: str | None = None
    last_name: str | None = None
    phone: str | None = None
    marketing_opt_in: bool = False
    tags: tuple[str, ...] = ()
    created_at: datetime | None = None
    updated_at: datetime | None = None

    @property
    def full_name(self) -> str | None:
        name = " ".join(p for p in (self.first_name, self.last_name) if p)
        return name or None

    def as_source(self, *, with_tags: bool = True) -> dict[str, Any]:
        out: dict[str, Any] = {"id": self.id, "email": self.email, "first_name": self.first_name,
               "last_name": self.last_name, "full_name": self.full_name, "phone": self.phone,
               "marketing_opt_in": self.marketing_opt_in,
               "created_at": self.created_at, "updated_at": self.updated_at}
        if with_tags:
            out["tags"] = list(self.tags)
        return out


@dataclass(frozen=True, slots=True)
class Order:
    """A sale: an order grouping one or more tickets of one event."""

    id: str
    amount: Money
    fee: Money
    quantity: int
    status: str
    ticket_type: str | None = None
    purchased_at: datetime | None = None
    updated_at: datetime | None = None

    def as_source(self) -> dict[str, Any]:
        return {"id": self.id, "amount": self.amount.amount, "fee": self.fee.amount,
                "currency": self.amount.currency, "quantity": self.quantity,
                "status": self.status, "ticket_type": self.ticket_type,
                "purchased_at": self.purchased_at, "updated_at": self.updated_at}


@dataclass(frozen=True, slots=True)
class Stock:
    """An event's tickets: its capacity, those sold online (tickets of live orders) and
    those sold at a provider's register (``pos_sales``). ``remaining`` may be negative when
    the two channels together sold more than the capacity."""

    id: str
    name: str
    capacity: int
    sold: int
    pos_sold: int
    status: str | None = None
    starts_at: datetime | None = None

    @property
    def remaining(self) -> int:
        return self.capacity - self.sold - self.pos_sold

    def as_source(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "status": self.status,
                "starts_at": self.starts_at, "capacity": self.capacity, "sold": self.sold,
                "pos_sold": self.pos_sold, "remaining": self.remaining}


@dataclass(frozen=True, slots=True)
class SourceRecord:
    """One platform row, normalised, ready for a field mapping.

    ``changed_at`` is the newest change timestamp of every row the record is built from;
    ``deleted`` is true when the platform marked the row deleted.
    """

    entity: Entity
    local_id: str
    changed_at: datetime | None
    deleted: bool
    data: Mapping[str, Any] = field(repr=False)
