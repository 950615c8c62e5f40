"""Malformed Stripe answers become classified errors, never crashes."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from aiohttp import web

from daemon.provider import (
    ClientContext,
    Credentials,
    Entity,
    ErrorKind,
    OutboundRecord,
    ProviderClient,
    ProviderError,
)
from daemon.testing.emulator import EmulatorServer
from plugins.stripe.provider import StripeProvider

BODIES = [b"<html>gateway</html>", b"[1, 2, 3]", b'{"unexpected": true}', b""]


@pytest.fixture(params=BODIES, ids=["html", "list", "object", "empty"])
async def garbage(request: pytest.FixtureRequest) -> AsyncIterator[str]:
    body: bytes = request.param

    async def answer(_: web.Request) -> web.Response:
        return web.Response(body=body, content_type="application/json")

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", answer)
    async with EmulatorServer(app) as server:
        yield server.url


def _record(entity: Entity, payload: dict[str, object]) -> OutboundRecord:
    return OutboundRecord(entity=entity, local_id="r1", payload=payload, content_hash="h",
                          idempotency_key="k1")


async def _client(provider: StripeProvider, url: str,
                  http: httpx.AsyncClient) -> ProviderClient:
    creds = Credentials(access_token="tok", api_key="sk_test_x")
    return provider.client(ClientContext(venue_id="v", credentials=creds, options={},
                                         http=http, base_url=url))


CASES = [
    (StripeProvider(), Entity.PRODUCT, {"name": "A", "price": {"unit_amount": 100,
                                                               "currency": "usd"}}),
    (StripeProvider(), Entity.CUSTOMER, {"email": "a@b.co"}),
    (StripeProvider(), Entity.TRANSACTION, {"customer_email": "a@b.co", "description": "A",
                                            "amount": 100, "currency": "usd"}),
]


@pytest.mark.parametrize(("provider", "entity", "payload"), CASES,
                         ids=[f"{p.name}-{e.value}" for p, e, _ in CASES])
async def test_garbage_is_a_classified_error_or_a_failed_record(
        garbage: str, provider: StripeProvider, entity: Entity,
        payload: dict[str, object]) -> None:
    async with httpx.AsyncClient(timeout=5) as http:
        client = await _client(provider, garbage, http)
        kind: ErrorKind | None = None
        results = []
        try:
            results = await client.push(entity, [_record(entity, payload)])
        except ProviderError as exc:
            kind = exc.kind
        if kind is not None:
            assert kind in (ErrorKind.RETRYABLE, ErrorKind.PERMANENT)
            return
        [result] = results
        assert result.local_id == "r1"
        if result.ok:  # only acceptable when the answer carried nothing to contradict it
            assert result.remote_id
        else:
            assert result.error_kind is not None
