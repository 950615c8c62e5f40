"""The QuickBooks emulator sends signed webhooks that the provider verifies and parses."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import httpx
import pytest
from aiohttp import web

from daemon.provider import ClientContext, Credentials, EmulatorSettings, Entity, WebhookRequest
from daemon.testing.emulator import EmulatorServer
from plugins.quickbooks import QuickBooksProvider
from plugins.quickbooks.emulator import DEFAULT_REALM, QuickBooksEmulator
from tests.integration.quickbooks.test_client import customer

provider = QuickBooksProvider()


@pytest.mark.parametrize("fmt", ["classic", "cloudevents"])
async def test_changes_are_delivered_signed(fmt: str) -> None:
    received: asyncio.Queue[WebhookRequest] = asyncio.Queue()

    async def hook(request: web.Request) -> web.Response:
        await received.put(WebhookRequest(headers=dict(request.headers),
                                          body=await request.read(), url=str(request.url),
                                          received_at=datetime.now(UTC)))
        return web.Response(status=200)

    app = web.Application()
    app.router.add_post("/hook", hook)
    async with EmulatorServer(app) as sink:
        emulator = QuickBooksEmulator(EmulatorSettings(webhook_url=sink.url + "/hook",
                                                       webhook_secret="verifier"))
        emulator.webhook_format = fmt  # type: ignore[assignment]
        async with EmulatorServer(emulator) as server, httpx.AsyncClient() as http:
            token = str(emulator.default_credentials()["access_token"])
            client = provider.client(ClientContext(
                venue_id="v", credentials=Credentials(access_token=token,
                                                      account={"realm_id": DEFAULT_REALM}),
                http=http, options={}, base_url=server.url))
            [result] = await client.push(Entity.CUSTOMER, [customer(1)])
            delivery = await asyncio.wait_for(received.get(), 10)
    assert provider.verify_webhook(delivery, "verifier").ok
    assert not provider.verify_webhook(delivery, "other").ok
    [change] = provider.parse_webhook(delivery)
    assert change.entity is Entity.CUSTOMER
    assert change.change == "created"
    assert change.remote_id == result.remote_id
    assert change.account_id == DEFAULT_REALM
