"""What a scenario runs in: a fresh database with the platform's tables and seeded venues,
the providers' emulators on loopback, an integration per venue, and the tally of what
reached each emulator (every source record exactly once, or how it missed)."""

from __future__ import annotations

import contextlib
import json
import tempfile
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import httpx

from daemon.db import init_connection
from daemon.plugins import load_plugins
from daemon.provider import EmulatorSettings
from daemon.queue import enqueue
from daemon.testing.emulator import Emulator, EmulatorServer
from daemon.testing.platform import create_platform_schema, seed_venue
from daemon.testing.postgres import PostgresServer

PROVIDERS = ("square", "stripe", "mailchimp", "quickbooks")
ENTITIES = ("product", "customer", "transaction")


@dataclass(frozen=True)
class Sizes:
    """Source rows of one venue: events (products), customers, orders (transactions)."""

    events: int
    customers: int
    orders: int

    @property
    def records(self) -> int:
        return self.events + self.customers + self.orders


def _dig(record: Mapping[str, Any], *path: str | int) -> Any:
    value: Any = record
    for step in path:
        if isinstance(step, int):
            value = value[step] if isinstance(value, list) and len(value) > step else None
        else:
            value = value.get(step) if isinstance(value, Mapping) else None
    return value


Key = Callable[[Mapping[str, Any]], Any]

#: How each emulator's stored record names the source row it came from, per entity; and the
#: SQL that gives the same name for each source row of a venue. A record whose key is not
#: a source row's counts as a stray; two records with one key are a duplicate.
KEYS: dict[str, dict[str, tuple[Key, str]]] = {
    "stripe": {
        "product": (lambda r: _dig(r, "metadata", "event_id"), "SELECT id::text FROM events"),
        "customer": (lambda r: _dig(r, "metadata", "customer_id"),
                     "SELECT id::text FROM customers"),
        "transaction": (lambda r: _dig(r, "metadata", "order_id"),
                        "SELECT id::text FROM orders"),
    },
    "square": {
        "product": (lambda r: None if r.get("is_deleted") else _dig(
            r, "item_data", "variations", 0, "item_variation_data", "sku"),
                    "SELECT id::text FROM events"),
        "customer": (lambda r: r.get("reference_id"), "SELECT id::text FROM customers"),
        "transaction": (lambda r: r.get("reference_id"), "SELECT id::text FROM orders"),
    },
    "mailchimp": {
        "product": (lambda r: r.get("id"), "SELECT id::text FROM events"),
        "customer": (lambda r: str(r.get("email_address", "")).lower(),
                     "SELECT lower(email) FROM customers"),
        "transaction": (lambda r: r.get("id"), "SELECT id::text FROM orders"),
    },
    "quickbooks": {
        "product": (lambda r: r.get("Sku"), "SELECT id::text FROM events"),
        "customer": (lambda r: str(_dig(r, "PrimaryEmailAddr", "Address") or "").lower(),
                     "SELECT lower(email) FROM customers"),
        "transaction": (lambda r: r.get("DocNumber"), "SELECT left(id::text, 21) FROM orders"),
    },
}


@dataclass
class Tally:
    """What reached the emulators, against what the source holds."""

    expected: int = 0
    at_provider: int = 0
    lost: int = 0
    duplicated: int = 0
    strays: int = 0
    examples: list[str] = field(default_factory=list)

    def add(self, other: Tally) -> None:
        self.expected += other.expected
        self.at_provider += other.at_provider
        self.lost += other.lost
        self.duplicated += other.duplicated
        self.strays += other.strays
        self.examples += other.examples[: max(0, 6 - len(self.examples))]


@dataclass
class Integration:
    provider: str
    venue: uuid.UUID
    sizes: Sizes
    emulator: Emulator
    url: str


@dataclass
class World:
    server: PostgresServer
    db_url: str
    pool: asyncpg.Pool
    workdir: Path
    integrations: list[Integration]

    @property
    def base_urls(self) -> dict[str, str]:
        return {i.provider: i.url for i in self.integrations}

    def daemon_env(self) -> dict[str, str]:
        """What syncd needs to reach these emulators (their test tokens answer ``oauth``)."""
        return {"SYNCD_SYNC_BASE_URLS": json.dumps(self.base_urls)}

    def emulator(self, provider: str) -> Emulator:
        return next(i.emulator for i in self.integrations if i.provider == provider)

    def set_faults(self, **changes: Any) -> None:
        for integration in self.integrations:
            integration.emulator.update_settings(changes)

    async def enqueue_all(self, entity: str = "all", *, max_attempts: int | None = None,
                          budgets: Mapping[str, int] | None = None) -> list[int]:
        """A sync of every integration; ``max_attempts`` is each job's budget (the queue's
        default when None), ``budgets`` a provider's own."""
        ids = []
        for integration in self.integrations:
            job = await enqueue(self.pool, venue_id=integration.venue,
                                provider=integration.provider, entity_type=entity,
                                payload={"trigger": "prove"},
                                max_attempts=(budgets or {}).get(integration.provider,
                                                                 max_attempts))
            if job is not None:
                ids.append(job)
        return ids

    async def queue_settled(self) -> bool:
        """No job pending or running (every job completed, failed or dead)."""
        return not await self.pool.fetchval(
            "SELECT count(*) FROM sync_queue WHERE status IN ('pending', 'processing')")

    async def tally(self) -> Tally:
        total = Tally()
        for integration in self.integrations:
            total.add(await self.tally_one(integration))
        return total

    async def tally_one(self, integration: Integration) -> Tally:
        tally = Tally()
        store = integration.emulator.store
        for entity in ENTITIES:
            key, sql = KEYS[integration.provider][entity]
            expected = {r[0] for r in await self.pool.fetch(
                f"{sql} WHERE venue_id = $1 AND deleted_at IS NULL", integration.venue)}
            found = Counter(str(k) for k in (key(r) for r in store.get(entity, {}).values())
                            if k)
            tally.expected += len(expected)
            tally.at_provider += sum(found.values())
            lost = expected - set(found)
            dups = {k: n for k, n in found.items() if n > 1}
            strays = set(found) - expected
            tally.lost += len(lost)
            tally.duplicated += sum(n - 1 for n in dups.values())
            tally.strays += len(strays)
            where = f"{integration.provider} {entity}"
            tally.examples += [f"{where} lost {k}" for k in sorted(lost)[:2]]
            tally.examples += [f"{where} {n}x {k}" for k, n in sorted(dups.items())[:2]]
            tally.examples += [f"{where} stray {k}" for k in sorted(strays)[:2]]
        return tally


async def _options(provider: str, url: str) -> dict[str, Any]:
    plugin = load_plugins([provider]).provider(provider)
    async with httpx.AsyncClient(timeout=30) as http:
        account = (await http.get(url + "/_emulator/credentials")).json()["account"]
    fields = plugin.options_model().model_fields
    return {k: v for k, v in account.items() if k in fields}


@contextlib.asynccontextmanager
async def world(server: PostgresServer, name: str, sizes: Mapping[str, Sizes], *,
                settings: EmulatorSettings | None = None,
                keep: bool = False) -> AsyncIterator[World]:
    """A fresh migrated database (dropped at the end), the platform's tables with one venue
    per provider in ``sizes``, that provider's emulator and a connected integration."""
    db_url = await server.create_database()
    workdir = Path(tempfile.mkdtemp(prefix=f"syncd-prove-{name}-"))
    pool = await asyncpg.create_pool(db_url, min_size=1, max_size=6, init=init_connection)
    assert pool is not None
    plugins = load_plugins(list(sizes))
    try:
        async with contextlib.AsyncExitStack() as stack:
            integrations = []
            async with pool.acquire() as conn:
                await create_platform_schema(conn)
            for provider, size in sizes.items():
                emu = plugins.provider(provider).emulator(
                    settings or EmulatorSettings(seed=15))
                served = await stack.enter_async_context(EmulatorServer(emu))
                assert served.emulator is not None
                async with pool.acquire() as conn:
                    sample = await seed_venue(conn, name=f"Prove {name} {provider}",
                                              events=size.events, customers=size.customers,
                                              orders=size.orders)
                await pool.execute(
                    "INSERT INTO integration_configs (venue_id, provider, venue_name, status, "
                    "credentials, options) VALUES ($1, $2, $3, 'connected', $4, $5)",
                    sample.venue_id, provider, sample.name, {"access_token": "oauth"},
                    await _options(provider, served.url))
                integrations.append(Integration(provider, sample.venue_id, size,
                                                served.emulator, served.url))
            yield World(server, db_url, pool, workdir, integrations)
    finally:
        await pool.close()
        if not keep:
            await server.drop_database(db_url)
