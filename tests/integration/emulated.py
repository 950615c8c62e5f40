"""A provider client under test against its emulator, records built from a template, and a
seeded venue connected to a bundled provider's emulator with an engine to sync it.

Shared by the per-provider integration tests (each provider's conftest supplies its source
records, its client class and its emulator) and the engine's tests against the emulators.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import asyncpg
import httpx

from daemon.credentials import EmulatorTokens
from daemon.locks import AccountLocks
from daemon.mapping import apply_mapping, content_hash, parse_entity_mapping
from daemon.plugins import load_plugins
from daemon.provider import (
    ClientContext,
    Credentials,
    EmulatorSettings,
    Entity,
    OutboundRecord,
    Provider,
    TemplateSpec,
)
from daemon.ratelimit import LimiterRegistry
from daemon.sync import SyncEngine, SyncSettings
from daemon.testing.emulator import Emulator, EmulatorServer
from daemon.testing.kit import VirtualClock
from daemon.testing.platform import SampleVenue, create_platform_schema, seed_venue
from daemon.testing.runtime import runtime_for

C = TypeVar("C")
E = TypeVar("E", bound=Emulator)
V = TypeVar("V", bound="ConnectedVenue")

#: Paths that only read, though some are POSTs (Square's searches and batch retrieves,
#: QuickBooks' CDC).
READ_PATHS = ("/search", "/query", "/bulk-retrieve", "/batch-retrieve", "/cdc")


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
    """A running emulator, a control client on it, and a factory of provider clients.

    The clients' waits (``Retry-After``, backoff, rate limits) and the emulator's count of
    its documented limits run on ``clock``, virtual time as in the conformance kit: the
    tests assert what arrives, never how long it took."""

    server: EmulatorServer
    emulator: E
    control: httpx.AsyncClient
    http: httpx.AsyncClient
    make_client: Callable[[ClientContext], C]
    #: One process's per-account locks, shared by every client made here (as the runtime
    #: shares its own), so two clients of one account serialise what the provider needs.
    locks: AccountLocks = field(default_factory=AccountLocks)
    clock: VirtualClock = field(default_factory=VirtualClock)

    def __post_init__(self) -> None:
        self.limiters = LimiterRegistry(self.clock)
        self.emulator.use_clock(self.clock.now)

    async def credentials(self) -> Credentials:
        data = (await self.control.get("/_emulator/credentials")).json()
        return Credentials(access_token=data.get("access_token"), api_key=data.get("api_key"),
                           account=data["account"])

    async def client(self, credentials: Credentials | None = None,
                     options: Mapping[str, Any] | None = None) -> C:
        creds = credentials or await self.credentials()
        return self.make_client(ClientContext(
            venue_id="v1", credentials=creds, options=dict(options or {}), http=self.http,
            base_url=self.server.url, environment="sandbox", locks=self.locks,
            limiters=self.limiters))

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


@dataclass
class ConnectedVenue:
    """A seeded venue connected to a bundled provider's emulator, and an engine to sync it."""

    pool: asyncpg.Pool
    provider: Provider
    emulator: Emulator
    engine: SyncEngine
    venue: uuid.UUID

    def writes(self) -> int:
        """Requests so far that could change something at the provider."""
        return sum(1 for r in self.emulator.requests
                   if r.method in ("POST", "PUT", "PATCH", "DELETE")
                   and not any(p in r.path for p in READ_PATHS))


@asynccontextmanager
async def connected_venue(pool: asyncpg.Pool, name: str, kind: type[V], *, customers: int,
                          events: int, orders: int) -> AsyncIterator[V]:
    """The platform tables with one seeded venue, bundled provider ``name``'s emulator on
    loopback, the integration row with the emulator account's options, and an engine."""
    provider = load_plugins().provider(name)
    async with pool.acquire() as conn:
        await create_platform_schema(conn)
        sample: SampleVenue = await seed_venue(conn, customers=customers, events=events,
                                               orders=orders)
    app = provider.emulator(EmulatorSettings(seed=7))
    async with EmulatorServer(app) as server, httpx.AsyncClient(timeout=60) as http:
        assert server.emulator is not None
        account = (await http.get(server.url + "/_emulator/credentials")).json()["account"]
        fields = provider.options_model().model_fields
        options = {k: v for k, v in account.items() if k in fields}
        await pool.execute(
            "INSERT INTO integration_configs (venue_id, provider, venue_name, status, "
            "credentials, options) VALUES ($1, $2, $3, 'connected', $4, $5)",
            sample.venue_id, provider.name, sample.name, {"access_token": "oauth"}, options)
        urls = {provider.name: server.url}
        # The clients' waits and the emulator's limits on virtual time (see Emulated).
        clock = VirtualClock()
        server.emulator.use_clock(clock.now)
        runtime = runtime_for(pool, {provider.name: provider}, http=http,
                              sync=SyncSettings(base_urls=urls, max_backoff_seconds=0.2),
                              tokens=EmulatorTokens(urls), limiters=LimiterRegistry(clock))
        async with runtime.opened():
            yield kind(pool, provider, server.emulator, runtime.engine, sample.venue_id)
