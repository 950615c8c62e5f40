"""Shared by the HTTP tests: the app on a real port, signed deliveries, connected venues."""

from __future__ import annotations

import asyncio
import json
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator, Mapping
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg

from daemon.db import init_connection
from daemon.http import create_app
from daemon.http.secrets import ReferenceWebhookSecrets
from daemon.http.server import listening
from daemon.plugins import load_plugins
from daemon.provider import Provider
from daemon.queue.types import Job
from daemon.settings import Settings
from plugins.mailchimp import webhooks as mailchimp
from plugins.quickbooks import webhooks as quickbooks
from plugins.square import webhooks as square
from plugins.stripe import webhooks as stripe

SQUARE_KEY = "sq-signature-key-0123456789"
QUICKBOOKS_TOKEN = "qbo-verifier-token-0123456789"
STRIPE_VENUE_SECRET = "whsec_venue0123456789"
MAILCHIMP_VENUE_SECRET = "mc-signing-secret-0123456789"
MAILCHIMP_URL_TOKEN = "mc-url-token-0123456789abcdef"

VENUE_STRIPE = uuid.UUID("5e0c4b7a-0000-4000-8000-000000000001")
VENUE_MAILCHIMP = uuid.UUID("5e0c4b7a-0000-4000-8000-000000000002")
VENUE_MAILCHIMP_TOKEN = uuid.UUID("5e0c4b7a-0000-4000-8000-000000000003")
VENUE_SQUARE = uuid.UUID("5e0c4b7a-0000-4000-8000-000000000004")
VENUE_QUICKBOOKS = uuid.UUID("5e0c4b7a-0000-4000-8000-000000000005")

ENV = {
    "VENUE_TEST_STRIPE_WEBHOOK_SECRET": STRIPE_VENUE_SECRET,
    "VENUE_TEST_MAILCHIMP_WEBHOOK_SECRET": MAILCHIMP_VENUE_SECRET,
    "VENUE_TEST_MAILCHIMP_URL_TOKEN": MAILCHIMP_URL_TOKEN,
}

SCHEDULES = {"customer": {"cron": "0 * * * *", "lane": "NORMAL", "direction": "push"},
             "product": {"cron": "0 * * * *", "lane": "NORMAL", "direction": "push"},
             "transaction": {"cron": "0 * * * *", "lane": "NORMAL", "direction": "push"}}


def providers() -> dict[str, Provider]:
    return dict(load_plugins().providers)


def settings(tmp_path: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "webhook_secrets": {"square": SQUARE_KEY, "quickbooks": QUICKBOOKS_TOKEN},
        "config_dir": tmp_path / "config",
        "public_base_url": "https://syncd.example",
    }
    values.update(overrides)
    return Settings(**values)


async def connect_venues(pool: asyncpg.Pool) -> None:
    """Integrations of the test venues, with account facts the processor matches on."""
    rows = [
        (VENUE_STRIPE, "stripe", {"api_key": "env:VENUE_TEST_STRIPE_KEY",
                                  "webhook_secret": "env:VENUE_TEST_STRIPE_WEBHOOK_SECRET"}, {}),
        (VENUE_MAILCHIMP, "mailchimp",
         {"api_key": "env:VENUE_TEST_MC_KEY",
          "webhook_secret": "env:VENUE_TEST_MAILCHIMP_WEBHOOK_SECRET"},
         {"list_id": "a1b2c3d4e5"}),
        (VENUE_MAILCHIMP_TOKEN, "mailchimp", {"api_key": "env:VENUE_TEST_MC_KEY",
                                              "token": "env:VENUE_TEST_MAILCHIMP_URL_TOKEN"},
         {"list_id": "f0f0f0f0f0"}),
        (VENUE_SQUARE, "square", {"token": "oauth", "account": {"merchant_id": "MLEMULATOR0001"}},
         {}),
        (VENUE_QUICKBOOKS, "quickbooks", {"token": "oauth",
                                          "account": {"realm_id": "9130350000000001"}}, {}),
    ]
    async with pool.acquire() as conn:
        for venue, provider, credentials, options in rows:
            await conn.execute(
                "INSERT INTO integration_configs (venue_id, provider, credentials, options, "
                "schedules) VALUES ($1, $2, $3, $4, $5)", venue, provider, credentials, options,
                SCHEDULES)


@dataclass
class Running:
    url: str
    settings: Settings


@asynccontextmanager
async def running_app(pool: asyncpg.Pool, tmp_path: Path,
                      **overrides: Any) -> AsyncIterator[Running]:
    cfg = settings(tmp_path, **overrides)
    app = create_app(pool=pool, providers=providers(), settings=cfg,
                     secrets=ReferenceWebhookSecrets(pool))
    async with listening(app, cfg, host="127.0.0.1", port=0) as url:
        yield Running(url, cfg)


@contextmanager
def app_in_thread(db_url: str, tmp_path: Path, **overrides: Any) -> Iterator[str]:
    """The app with its venues connected on a real port, its loop in a thread of its own
    (for synchronous callers: hypothesis and schemathesis tests); yields its URL."""
    ready = threading.Event()
    holder: dict[str, object] = {}

    async def main() -> None:
        pool = await asyncpg.create_pool(db_url, min_size=1, max_size=4, init=init_connection)
        holder["stop"], holder["loop"] = asyncio.Event(), asyncio.get_running_loop()
        try:
            await connect_venues(pool)
            async with running_app(pool, tmp_path, **overrides) as server:
                holder["url"] = server.url
                ready.set()
                stop = holder["stop"]
                assert isinstance(stop, asyncio.Event)
                await stop.wait()
        finally:
            await pool.close()
            ready.set()

    thread = threading.Thread(target=lambda: asyncio.run(main()), daemon=True)
    thread.start()
    assert ready.wait(60)
    assert "url" in holder, "the server did not start"
    try:
        yield str(holder["url"])
    finally:
        loop, stop = holder["loop"], holder["stop"]
        assert isinstance(loop, asyncio.AbstractEventLoop)
        assert isinstance(stop, asyncio.Event)
        loop.call_soon_threadsafe(stop.set)
        thread.join(60)


def path_for(provider: str) -> str:
    """The route each provider's test delivery goes to."""
    return {
        "square": "/webhooks/square",
        "quickbooks": "/webhooks/quickbooks",
        "stripe": f"/webhooks/stripe/{VENUE_STRIPE}",
        "mailchimp": f"/webhooks/mailchimp/{VENUE_MAILCHIMP}",
    }[provider]


def secret_for(provider: str) -> str:
    return {"square": SQUARE_KEY, "quickbooks": QUICKBOOKS_TOKEN,
            "stripe": STRIPE_VENUE_SECRET, "mailchimp": MAILCHIMP_VENUE_SECRET}[provider]


def sample_body(provider: str, n: int = 0) -> tuple[bytes, str]:
    """A body like the provider sends, and its content type."""
    if provider == "square":
        doc: Any = {"merchant_id": "MLEMULATOR0001", "type": "customer.updated",
                    "event_id": f"evt-sq-{n}", "created_at": "2026-01-01T00:00:00Z",
                    "data": {"type": "customer", "id": f"CUST{n}",
                             "object": {"customer": {"id": f"CUST{n}"}}}}
    elif provider == "stripe":
        doc = {"id": f"evt_{n:024d}", "object": "event", "type": "customer.updated",
               "created": int(time.time()), "data": {"object": {"id": f"cus_{n}",
                                                              "object": "customer"}}}
    elif provider == "quickbooks":
        doc = {"eventNotifications": [{"realmId": "9130350000000001", "dataChangeEvent": {
            "entities": [{"name": "Customer", "id": str(n + 1), "operation": "Update",
                          "lastUpdated": "2026-01-01T00:00:00.000Z"}]}}]}
    else:
        form = {"type": "profile", "fired_at": f"2026-01-01 00:00:{n % 60:02d}",
                "data": {"id": f"m{n}", "list_id": "a1b2c3d4e5",
                         "email": f"buyer{n}@example.com"}}
        from urllib.parse import urlencode

        return (urlencode(mailchimp.encode_form(form)).encode(),
                "application/x-www-form-urlencoded")
    return json.dumps(doc, separators=(",", ":")).encode(), "application/json"


def sign(provider: str, body: bytes, url: str, secret: str | None = None,
         timestamp: int | None = None) -> dict[str, str]:
    """The provider's signature headers for ``body`` delivered to ``url``."""
    key = secret if secret is not None else secret_for(provider)
    ts = int(time.time()) if timestamp is None else timestamp
    if provider == "square":
        return {square.SIGNATURE_HEADER: square.sign(body, url, key)}
    if provider == "stripe":
        return {"Stripe-Signature": stripe.signature_header(body, ts, key)}
    if provider == "quickbooks":
        return {quickbooks.SIGNATURE_HEADER: quickbooks.sign(body, key)}
    return {mailchimp.SIGNATURE_HEADER: mailchimp.sign(body, key, ts)}


def signed(provider: str, n: int = 0, *,
           base: str = "https://syncd.example") -> tuple[str, bytes, dict[str, str]]:
    """A valid delivery: path, body and headers."""
    path = path_for(provider)
    body, content_type = sample_body(provider, n)
    headers = {"Content-Type": content_type, **sign(provider, body, base + path)}
    return path, body, headers


class FakeLease:
    """The queue's JobContext for a handler run outside a worker (the lease always held)."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def assert_lease(self, conn: asyncpg.Connection) -> None:
        return None

    async def complete(self, conn: asyncpg.Connection) -> None:
        return None

    @property
    def cancelled(self) -> bool:
        return False


async def processing_job(pool: asyncpg.Pool, provider: str) -> Job:
    """The pending processing job of ``provider``, as a worker would claim it."""
    async with pool.acquire() as conn:
        row = await conn.fetchrow(
            "SELECT * FROM sync_queue WHERE provider = $1 AND entity_type = 'webhooks' "
            "AND status = 'pending'", provider)
    assert row is not None, f"no processing job queued for {provider}"
    values: Mapping[str, Any] = {**dict(row), "lease_token": uuid.uuid4()}
    return Job.from_record(values)
