"""Square client tests run against the Square emulator on 127.0.0.1."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from daemon.provider import EmulatorSettings, Entity, OutboundRecord
from plugins.square.client import SquareClient
from plugins.square.emulator import SquareEmulator
from plugins.square.provider import SquareProvider
from tests.integration.emulated import Emulated, emulated, mapped, with_payload

__all__ = ["Square", "outbound", "source", "with_payload"]

PROVIDER = SquareProvider()
TEMPLATE = next(t for t in PROVIDER.default_templates() if t.is_default)

Square = Emulated[SquareEmulator, SquareClient]


def source(entity: Entity, i: int, **overrides: Any) -> dict[str, Any]:
    venue = {"id": "v1", "name": "Hall", "timezone": "UTC", "type": "standard"}
    if entity is Entity.PRODUCT:
        record: dict[str, Any] = {"event": {"id": f"ev-{i}", "name": f"Show {i}",
                                            "description": "A night out", "price": 2500 + i,
                                            "currency": "usd"}, "venue": venue}
    elif entity is Entity.CUSTOMER:
        record = {"customer": {"id": f"cu-{i}", "email": f"Buyer{i}@Example.com",
                               "first_name": "Ada", "last_name": f"Buyer {i}",
                               "phone": "+14155550100"}, "venue": venue}
    else:
        record = {"order": {"id": f"or-{i}", "amount": 5000, "currency": "usd",
                            "quantity": 2},
                  "event": {"id": "ev-1", "name": "Show 1"},
                  "customer": {"email": f"buyer{i}@example.com"}, "venue": venue}
    for path, value in overrides.items():
        head, _, leaf = path.partition(".")
        record[head][leaf] = value
    return record


def outbound(entity: Entity, i: int, *, remote_id: str | None = None,
             **overrides: Any) -> OutboundRecord:
    return mapped(TEMPLATE, entity, source(entity, i, **overrides), i, remote_id)


@pytest.fixture
async def square() -> AsyncIterator[Square]:
    async with emulated(SquareEmulator(EmulatorSettings(seed=7)), SquareClient) as harness:
        yield harness
