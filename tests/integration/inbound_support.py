"""A seeded venue connected to several bundled providers' emulators, with an engine and an
inbound processor on real Postgres: the ground the two-way sync tests stand on."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import asyncpg
import httpx

from daemon.credentials import EmulatorTokens, ReferenceCredentialStore
from daemon.inbound.build import inbound_processor
from daemon.inbound.processor import InboundProcessor
from daemon.plugins import load_plugins
from daemon.provider import EmulatorSettings, Provider
from daemon.ratelimit import LimiterRegistry
from daemon.sync import RunOutcome, SyncEngine, SyncSettings
from daemon.testing.emulator import Emulator, EmulatorServer
from daemon.testing.platform import create_platform_schema, seed_venue

MAILCHIMP_SECRET = "mc-signing-secret-0123456789"
SECRET_ENV = "VENUE_TEST_INBOUND_MC_SECRET"


class _Unpaced:
    """A limiter clock whose waits pass at once (time moves on by the wait)."""

    def __init__(self) -> None:
        self.skipped = 0.0

    def now(self) -> float:
        return time.monotonic() + self.skipped

    async def sleep(self, seconds: float) -> None:
        self.skipped += max(0.0, seconds)
        await asyncio.sleep(0)


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


@dataclass
class World:
    """The platform, the emulators by provider, the engine and the processor."""

    pool: asyncpg.Pool
    venue: uuid.UUID
    providers: dict[str, Provider]
    emulators: dict[str, Emulator]
    servers: dict[str, EmulatorServer]
    engine: SyncEngine
    inbound: InboundProcessor

    async def sync(self, provider: str) -> None:
        report = await self.engine.run(str(self.venue), provider)
        assert report.outcome is RunOutcome.OK, report.error
        assert report.failed == 0, report.errors

    async def set_inbound(self, provider: str, rules: Mapping[str, Any]) -> None:
        """The integration's inbound rules, as `syncd apply` stores them."""
        await self.pool.execute(
            "UPDATE integration_configs SET field_mappings = $3 "
            "WHERE venue_id = $1 AND provider = $2", self.venue, provider,
            {"inbound": {"customer": dict(rules)}})

    async def customer(self, local_id: str) -> asyncpg.Record:
        row = await self.pool.fetchrow("SELECT * FROM customers WHERE id = $1::uuid", local_id)
        assert row is not None
        return row

    async def edit_customer(self, local_id: str, **values: Any) -> None:
        sets = ", ".join(f"{k} = ${i}" for i, k in enumerate(values, start=2))
        await self.pool.execute(
            f"UPDATE customers SET {sets}, updated_at = clock_timestamp() "
            "WHERE id = $1::uuid", local_id, *values.values())

    async def link(self, provider: str, local_id: str) -> asyncpg.Record:
        row = await self.pool.fetchrow(
            "SELECT * FROM entity_links WHERE venue_id = $1 AND provider = $2 "
            "AND entity_type = 'customer' AND local_id = $3", self.venue, provider, local_id)
        assert row is not None
        return row

    async def changes(self, provider: str | None = None) -> list[asyncpg.Record]:
        return list(await self.pool.fetch(
            "SELECT * FROM inbound_changes WHERE $1::text IS NULL OR provider = $1 ORDER BY id",
            provider))

    def writes(self, provider: str, path_part: str = "") -> int:
        """Requests so far that could change something at the provider."""
        return sum(1 for r in self.emulators[provider].requests
                   if r.method in ("POST", "PUT", "PATCH", "DELETE")
                   and path_part in r.path and not any(
                       p in r.path for p in ("/query", "/cdc", "/search")))

    def member(self, email: str) -> dict[str, Any]:
        for member in self.emulators["mailchimp"].collection("customer").values():
            if member["email_address"].lower() == email.lower():
                return member
        raise AssertionError(f"no Mailchimp member {email}")

    def qbo_customer(self, remote_id: str) -> dict[str, Any]:
        for record in self.emulators["quickbooks"].collection("customer").values():
            if str(record.get("Id")) == remote_id:
                return record
        raise AssertionError(f"no QuickBooks customer {remote_id}")


@asynccontextmanager
async def two_way(pool: asyncpg.Pool, names: Sequence[str] = ("mailchimp", "quickbooks"), *,
                  customers: int = 6, rate_limits: bool = True) -> AsyncIterator[World]:
    """The platform tables with one seeded venue (customers only), each named provider's
    emulator on loopback and connected, and an engine whose runs process what they pull.
    Without ``rate_limits`` neither the emulators nor the clients wait for the providers'
    documented rates (long randomised runs)."""
    plugins = load_plugins(list(names))
    async with pool.acquire() as conn:
        await create_platform_schema(conn)
        sample = await seed_venue(conn, customers=customers, events=1, orders=0)
    async with AsyncExitStack() as stack:
        http = await stack.enter_async_context(httpx.AsyncClient(timeout=60))
        servers: dict[str, EmulatorServer] = {}
        for name in names:
            settings = EmulatorSettings(seed=7, webhook_secret=MAILCHIMP_SECRET,
                                        enforce_rate_limits=rate_limits)
            server = await stack.enter_async_context(
                EmulatorServer(plugins.provider(name).emulator(settings)))
            servers[name] = server
            account = (await http.get(server.url + "/_emulator/credentials")).json()["account"]
            fields = plugins.provider(name).options_model().model_fields
            options = {k: v for k, v in account.items() if k in fields}
            await pool.execute(
                "INSERT INTO integration_configs (venue_id, provider, venue_name, status, "
                "credentials, options, schedules) VALUES ($1, $2, $3, 'connected', $4, $5, $6)",
                sample.venue_id, name, sample.name,
                {"access_token": "oauth", "webhook_secret": f"env:{SECRET_ENV}"}, options,
                {"customer": {"cron": "0 * * * *", "lane": "NORMAL", "direction": "both"}})
        urls = {name: server.url for name, server in servers.items()}
        providers = dict(plugins.providers)
        processor = inbound_processor(pool, providers)
        engine = SyncEngine(pool, providers,
                            ReferenceCredentialStore(pool, EmulatorTokens(urls)), http=http,
                            settings=SyncSettings(base_urls=urls, max_backoff_seconds=0.2),
                            inbound=processor,
                            limiters=None if rate_limits else LimiterRegistry(_Unpaced()))
        emulators = {}
        for name, server in servers.items():
            assert server.emulator is not None
            emulators[name] = server.emulator
        yield World(pool, sample.venue_id, providers, emulators, servers, engine, processor)


def outcome(row: Mapping[str, Any]) -> tuple[str, str | None]:
    return row["status"], row["reason_code"]


def fields_of(row: Mapping[str, Any]) -> Any:
    value = row["outcome"]
    return json.loads(value) if isinstance(value, str) else value
