"""The engine against the bundled providers' emulators: initial sync, a re-run with no
change that writes nothing, and lost answers after commit that leave no duplicate."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import asyncpg
import httpx
import pytest

from daemon.credentials import EmulatorTokens, ReferenceCredentialStore
from daemon.plugins import load_plugins
from daemon.provider import Direction, EmulatorSettings, Entity, Provider
from daemon.sync import RunOutcome, SyncEngine, SyncSettings
from daemon.testing.emulator import Emulator, EmulatorServer
from daemon.testing.platform import create_platform_schema, seed_venue

CUSTOMERS, EVENTS, ORDERS = 14, 3, 4
SIZES = {Entity.CUSTOMER: CUSTOMERS, Entity.PRODUCT: EVENTS, Entity.TRANSACTION: ORDERS}
READS = ("/search", "/query", "/bulk-retrieve", "/cdc")


@dataclass
class Bundled:
    provider: Provider
    emulator: Emulator
    engine: SyncEngine
    venue: uuid.UUID

    def writes(self) -> int:
        return sum(1 for r in self.emulator.requests
                   if r.method in ("POST", "PUT", "PATCH", "DELETE")
                   and not any(p in r.path for p in READS))

    def pushed(self) -> list[Entity]:
        caps = self.provider.capabilities
        return [e for e in Entity if caps.supports(e, Direction.PUSH)]


@pytest.fixture(params=["square", "stripe", "quickbooks", "mailchimp"])
async def bundled(request: pytest.FixtureRequest, pool: asyncpg.Pool
                  ) -> AsyncIterator[Bundled]:
    provider = load_plugins().provider(request.param)
    async with pool.acquire() as conn:
        await create_platform_schema(conn)
        sample = await seed_venue(conn, customers=CUSTOMERS, events=EVENTS, orders=ORDERS)
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
        engine = SyncEngine(pool, {provider.name: provider},
                            ReferenceCredentialStore(pool, EmulatorTokens(urls)), http=http,
                            settings=SyncSettings(base_urls=urls, max_backoff_seconds=0.2))
        yield Bundled(provider, server.emulator, engine, sample.venue_id)


def _counts(report: Any) -> dict[Entity, int]:
    return {e.entity: e.created + e.updated for e in report.entities}


async def test_initial_sync_then_no_change_writes_nothing(bundled: Bundled) -> None:
    report = await bundled.engine.run(str(bundled.venue), bundled.provider.name)
    assert report.outcome is RunOutcome.OK, report.error
    assert report.failed == 0, report.errors
    assert _counts(report) == {e: SIZES[e] for e in bundled.pushed()}
    writes = bundled.writes()
    again = await bundled.engine.run(str(bundled.venue), bundled.provider.name)
    assert again.outcome is RunOutcome.OK, again.error
    assert again.sent == 0
    assert bundled.writes() == writes
    full = await bundled.engine.run(str(bundled.venue), bundled.provider.name, full=True)
    assert full.sent == 0
    assert bundled.writes() == writes


async def test_answers_lost_after_commit_leave_no_duplicate(bundled: Bundled) -> None:
    entity = Entity.CUSTOMER
    bundled.emulator.update_settings({"reset_after_commit_rate": 0.5})
    await bundled.engine.run(str(bundled.venue), bundled.provider.name, entity=entity)
    bundled.emulator.update_settings({"reset_after_commit_rate": 0.0})
    report = await bundled.engine.run(str(bundled.venue), bundled.provider.name,
                                      entity=entity)
    assert report.outcome is RunOutcome.OK, report.error
    assert report.failed == 0, report.errors
    stored = bundled.emulator.collection("customer")
    assert len(stored) == CUSTOMERS
