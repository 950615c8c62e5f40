"""The Mailchimp emulator sends signed webhooks that the provider verifies and parses."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import httpx
from aiohttp import web

from daemon.provider import ClientContext, Credentials, EmulatorSettings, Entity, WebhookRequest
from daemon.testing.emulator import EmulatorServer
from plugins.mailchimp import MailchimpProvider
from plugins.mailchimp.emulator import DEFAULT_LIST_ID, MailchimpEmulator
from tests.integration.mailchimp.test_client import member

provider = MailchimpProvider()


async def test_member_changes_are_delivered_signed() -> None:
    received: asyncio.Queue[WebhookRequest] = asyncio.Queue()

    async def hook(request: web.Request) -> web.Response:
        await received.put(WebhookRequest(headers=dict(request.headers),
                                          body=await request.read(), url=str(request.url),
                                          received_at=datetime.now(UTC)))
        return web.Response(status=200)

    app = web.Application()
    app.router.add_post("/hook", hook)
    async with EmulatorServer(app) as sink:
        settings = EmulatorSettings(webhook_url=sink.url + "/hook", webhook_secret="s3cret")
        emulator = MailchimpEmulator(settings)
        async with EmulatorServer(emulator) as server, httpx.AsyncClient() as http:
            key = str(emulator.default_credentials()["api_key"])
            client = provider.client(ClientContext(
                venue_id="v", credentials=Credentials(api_key=key), http=http,
                options={"list_id": DEFAULT_LIST_ID}, base_url=server.url))
            [result] = await client.push(Entity.CUSTOMER, [member(1)])
            delivery = await asyncio.wait_for(received.get(), 10)
    assert delivery.headers["Content-Type"] == "application/x-www-form-urlencoded"
    assert provider.verify_webhook(delivery, "s3cret").ok
    assert not provider.verify_webhook(delivery, "other").ok
    [change] = provider.parse_webhook(delivery)
    assert change.change == "subscribed"
    assert change.remote_id == result.remote_id
    assert change.account_id == DEFAULT_LIST_ID
