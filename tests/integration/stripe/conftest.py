"""Stripe client tests run against the Stripe emulator on 127.0.0.1."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from daemon.provider import EmulatorSettings, Entity, OutboundRecord
from plugins.stripe.client import StripeClient
from plugins.stripe.emulator import StripeEmulator
from plugins.stripe.provider import StripeProvider
from tests.integration.emulated import Emulated, emulated, mapped, with_payload

__all__ = ["Stripe", "outbound", "source", "with_payload"]

PROVIDER = StripeProvider()
TEMPLATE = next(t for t in PROVIDER.default_templates() if t.is_default)

Stripe = Emulated[StripeEmulator, StripeClient]


def source(entity: Entity, i: int, **overrides: Any) -> dict[str, Any]:
    venue = {"id": "v1", "name": "Hall", "timezone": "UTC", "type": "standard"}
    if entity is Entity.PRODUCT:
        record: dict[str, Any] = {"event": {"id": f"ev-{i}", "name": f"Show {i}",
                                            "description": "A night out", "price": 2500 + i,
                                            "currency": "USD", "url": "https://t.example/1",
                                            "category": "music",
                                            "starts_at": "2026-03-01T19:30:00+00:00"},
                                  "venue": venue}
    elif entity is Entity.CUSTOMER:
        record = {"customer": {"id": f"cu-{i}", "email": f"Buyer{i}@Example.com",
                               "full_name": f"Ada Buyer {i}", "phone": "+14155550100",
                               "marketing_opt_in": True}, "venue": venue}
    else:
        record = {"order": {"id": f"or-{i}", "amount": 5000, "currency": "USD",
                            "quantity": 2},
                  "event": {"id": "ev-1", "name": "Show 1"},
                  "customer": {"email": f"buyer{i}@example.com", "full_name": f"Ada {i}"},
                  "venue": venue}
    for path, value in overrides.items():
        head, _, leaf = path.partition(".")
        record[head][leaf] = value
    return record


def outbound(entity: Entity, i: int, *, remote_id: str | None = None,
             **overrides: Any) -> OutboundRecord:
    return mapped(TEMPLATE, entity, source(entity, i, **overrides), i, remote_id)


@pytest.fixture
async def stripe() -> AsyncIterator[Stripe]:
    async with emulated(StripeEmulator(EmulatorSettings(seed=7)), StripeClient) as harness:
        yield harness
