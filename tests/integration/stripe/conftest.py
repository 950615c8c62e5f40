"""Stripe client tests run against the Stripe emulator on 127.0.0.1."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from daemon.mapping import apply_mapping, content_hash, parse_entity_mapping
from daemon.provider import (
    ClientContext,
    Credentials,
    EmulatorSettings,
    Entity,
    OutboundRecord,
)
from daemon.testing.emulator import EmulatorServer
from plugins.stripe.client import StripeClient
from plugins.stripe.emulator import StripeEmulator
from plugins.stripe.provider import StripeProvider

PROVIDER = StripeProvider()
TEMPLATE = next(t for t in PROVIDER.default_templates() if t.is_default)


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
    mapping = parse_entity_mapping(TEMPLATE.mappings[entity.value])
    payload = apply_mapping(mapping, source(entity, i, **overrides))
    digest = content_hash(payload)
    return OutboundRecord(entity=entity, local_id=f"{entity.value}-{i}", payload=payload,
                          content_hash=digest, idempotency_key=f"int1:{entity.value}:{i}:{digest}",
                          remote_id=remote_id)


def with_payload(record: OutboundRecord, payload: Mapping[str, Any]) -> OutboundRecord:
    digest = content_hash(payload)
    return OutboundRecord(entity=record.entity, local_id=record.local_id, payload=payload,
                          content_hash=digest,
                          idempotency_key=f"int1:{record.entity.value}:{record.local_id}:{digest}",
                          remote_id=record.remote_id)


@dataclass
class Stripe:
    server: EmulatorServer
    emulator: StripeEmulator
    control: httpx.AsyncClient
    http: httpx.AsyncClient

    async def credentials(self) -> Credentials:
        data = (await self.control.get("/_emulator/credentials")).json()
        return Credentials(api_key=data["api_key"], account=data["account"])

    async def client(self, credentials: Credentials | None = None,
                     options: Mapping[str, Any] | None = None) -> StripeClient:
        creds = credentials or await self.credentials()
        return StripeClient(ClientContext(venue_id="v1", credentials=creds,
                                          options=dict(options or {}), http=self.http,
                                          base_url=self.server.url, environment="sandbox"))

    async def configure(self, **changes: Any) -> None:
        response = await self.control.patch("/_emulator/settings", json=changes)
        assert response.status_code == 200, response.text

    async def store(self, collection: str) -> list[dict[str, Any]]:
        data = (await self.control.get("/_emulator/store")).json()
        records: list[dict[str, Any]] = data.get(collection, [])
        return records

    async def requests(self) -> list[dict[str, Any]]:
        data: list[dict[str, Any]] = (await self.control.get("/_emulator/requests")).json()
        return data


@pytest.fixture
async def stripe() -> AsyncIterator[Stripe]:
    emulator = StripeEmulator(EmulatorSettings(seed=7))
    async with (EmulatorServer(emulator) as server,
                httpx.AsyncClient(base_url=server.url, timeout=10) as control,
                httpx.AsyncClient(timeout=10) as http):
        yield Stripe(server, emulator, control, http)
