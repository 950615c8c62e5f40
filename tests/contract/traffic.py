"""Record what a plugin sends to its emulator and what the emulator answers.

The plugin's client is driven through the contract as the sync engine drives it: creates
in batches, updates of linked records, a connection test, pulls where supported, and one
call with bad credentials (for the error body).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
from dataclasses import dataclass
from typing import Any

import httpx

from daemon.provider import Credentials, Direction, EmulatorSettings, Provider, ProviderError
from daemon.testing.kit import (
    KitSession,
    chunks,
    outbound_records,
    push_until_done,
    pushable_entities,
)


@dataclass(frozen=True, slots=True)
class Exchange:
    method: str
    path: str
    query: dict[str, str]
    request_type: str
    request_body: bytes
    status: int
    response_type: str
    response_body: bytes
    #: Request headers, lower-cased, without Authorization.
    request_headers: dict[str, str] = dataclasses.field(default_factory=dict)

    def request_json(self) -> Any:
        return json.loads(self.request_body) if self.request_body else None

    def response_json(self) -> Any:
        return json.loads(self.response_body) if self.response_body else None

    @property
    def is_json_response(self) -> bool:
        return "json" in self.response_type

    def __str__(self) -> str:
        return f"{self.method} {self.path} -> {self.status}"


async def _drive(provider: Provider) -> list[Exchange]:
    exchanges: list[Exchange] = []
    writes: list[httpx.Request] = []

    async def on_response(response: httpx.Response) -> None:
        await response.aread()
        request = response.request
        if request.method != "GET" and response.status_code < 300:
            writes.append(request)
        exchanges.append(Exchange(
            method=request.method, path=request.url.path,
            query=dict(request.url.params.multi_items()),
            request_type=request.headers.get("content-type", "").split(";")[0],
            request_body=request.content,
            status=response.status_code,
            response_type=response.headers.get("content-type", "").split(";")[0],
            response_body=response.content,
            request_headers={k.lower(): v for k, v in request.headers.items()
                             if k.lower() != "authorization"},
        ))

    async with KitSession(provider, EmulatorSettings(seed=1)) as session:
        assert session.http is not None
        session.http.event_hooks["response"] = [on_response]
        client = await session.client()
        for entity in pushable_entities(provider):
            size = provider.capabilities.entities[entity].batch_size
            count = min(size, 3) + 1
            created = await push_until_done(
                client, entity, outbound_records(provider, entity, count, run="contract"),
                size, attempts=3, clock=session.clock)
            changed = outbound_records(provider, entity, count, run="changed")
            linked = [dataclasses.replace(r, remote_id=created.results[f"{entity.value}-"
                                                                      f"contract-{i}"].remote_id)
                      for i, r in enumerate(changed)]
            for chunk in chunks(linked, size):
                # Some updates are refused by design (Square: paid orders); the answer is
                # still checked.
                with contextlib.suppress(ProviderError):
                    await client.push(entity, chunk)
        await client.test_connection()
        for entity in provider.capabilities.entities:
            if provider.capabilities.supports(entity, Direction.PULL):
                with contextlib.suppress(ProviderError):
                    async for _ in client.pull(entity, None):
                        pass
        good = await session.credentials()
        bad = Credentials(access_token="x" * 20 if good.access_token else None,
                          api_key="x" * 20 + "-us1" if good.api_key else None,
                          account=good.account)
        bad_client = await session.client(bad)
        entity = pushable_entities(provider)[0]
        with contextlib.suppress(ProviderError):
            await bad_client.push(entity, outbound_records(provider, entity, 1, run="bad"))
        # The emulator's 429 and 5xx bodies, for a write the client really sent.
        if writes:
            for fault in ({"rate_limit_storm": 1.0}, {"rate_limit_storm": 0.0, "error_rate": 1.0}):
                await session.configure(**fault)
                await session.http.send(writes[0])
    return exchanges


def record_traffic(provider: Provider) -> list[Exchange]:
    """Every exchange between the provider's client and its emulator in one session."""
    return asyncio.run(_drive(provider))
