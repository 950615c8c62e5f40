"""A provider client under test against its emulator, and records built from a template.

Shared by the per-provider integration tests: each provider's conftest supplies its source
records, its client class and its emulator.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import httpx

from daemon.mapping import apply_mapping, content_hash, parse_entity_mapping
from daemon.provider import ClientContext, Credentials, Entity, OutboundRecord, TemplateSpec
from daemon.testing.emulator import Emulator, EmulatorServer

C = TypeVar("C")
E = TypeVar("E", bound=Emulator)


def record_for(entity: Entity, local_id: str, payload: Mapping[str, Any],
               remote_id: str | None = None, key_id: str | None = None) -> OutboundRecord:
    """An outbound record whose idempotency key follows its content, as the engine's does."""
    digest = content_hash(payload)
    return OutboundRecord(entity=entity, local_id=local_id, payload=payload,
                          content_hash=digest,
                          idempotency_key=f"int1:{entity.value}:{key_id or local_id}:{digest}",
                          remote_id=remote_id)


def mapped(template: TemplateSpec, entity: Entity, source: Mapping[str, Any], i: int,
           remote_id: str | None = None) -> OutboundRecord:
    """Record ``i`` of ``entity``: ``source`` mapped through the template."""
    payload = apply_mapping(parse_entity_mapping(template.mappings[entity.value]), source)
    return record_for(entity, f"{entity.value}-{i}", payload, remote_id, key_id=str(i))


def with_payload(record: OutboundRecord, payload: Mapping[str, Any]) -> OutboundRecord:
    """``record`` with another payload (and so another hash and idempotency key)."""
    return record_for(record.entity, record.local_id, payload, record.remote_id)


@dataclass
class Emulated(Generic[E, C]):
    """A running emulator, a control client on it, and a factory of provider clients."""

    server: EmulatorServer
    emulator: E
    control: httpx.AsyncClient
    http: httpx.AsyncClient
    make_client: Callable[[ClientContext], C]

    async def credentials(self) -> Credentials:
        data = (await self.control.get("/_emulator/credentials")).json()
        return Credentials(access_token=data.get("access_token"), api_key=data.get("api_key"),
                           account=data["account"])

    async def client(self, credentials: Credentials | None = None,
                     options: Mapping[str, Any] | None = None) -> C:
        creds = credentials or await self.credentials()
        return self.make_client(ClientContext(
            venue_id="v1", credentials=creds, options=dict(options or {}), http=self.http,
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


@asynccontextmanager
async def emulated(emulator: E, make_client: Callable[[ClientContext], C]
                   ) -> AsyncIterator[Emulated[E, C]]:
    """Serve ``emulator`` on loopback for the duration of the block."""
    async with (EmulatorServer(emulator) as server,
                httpx.AsyncClient(base_url=server.url, timeout=10) as control,
                httpx.AsyncClient(timeout=10) as http):
        yield Emulated(server, emulator, control, http, make_client)
