"""One provider running against its emulator: the server, the control API and clients."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from contextlib import AsyncExitStack
from datetime import UTC, datetime
from typing import Any, Self

import httpx
from pydantic import BaseModel, ValidationError

from daemon.provider import (
    ClientContext,
    Credentials,
    EmulatorSettings,
    Provider,
    ProviderClient,
    WebhookRequest,
)
from daemon.ratelimit import Clock, LimiterRegistry
from daemon.testing.emulator import EmulatorServer

__all__ = ["KitSession", "VirtualClock", "build_options"]


class VirtualClock:
    """Time that moves on at once: :meth:`sleep` advances it by the time asked for, by at
    least a microsecond (a wait computed as a tiny difference of two times then always
    ends, as it does on a real clock), and returns after one turn of the event loop."""

    #: The least a sleep advances the time by, in seconds.
    STEP = 1e-6

    def __init__(self, start: float = 1000.0) -> None:
        self._now = start

    def now(self) -> float:
        return self._now

    async def sleep(self, seconds: float) -> None:
        if seconds > 0:
            self._now += max(seconds, self.STEP)
        await asyncio.sleep(0)


def build_options(provider: Provider, account: Mapping[str, str],
                  options: Mapping[str, Any] | None = None) -> BaseModel | Mapping[str, Any]:
    """The provider's options for the emulator's account.

    ``options`` when given; else the options model's defaults; else the model filled from
    the account facts the emulator reports (list id, realm id...).
    """
    model = provider.options_model()
    if options is not None:
        return model.model_validate(dict(options))
    try:
        return model()
    except ValidationError:
        pass
    facts = {k: v for k, v in account.items() if k in model.model_fields}
    return model.model_validate(facts)


class KitSession:
    """A provider's emulator served on 127.0.0.1 plus the HTTP clients to drive it.

    ``async with KitSession(provider) as s:`` starts a fresh emulator (empty store);
    :meth:`client` builds a :class:`ProviderClient` on the emulator's credentials;
    the other methods are the emulator's control API.

    The clients' waits (a ``Retry-After`` pause, backoff between retries, rate limiting)
    run on ``clock``, by default virtual time that moves on at once (:class:`VirtualClock`):
    what the checks assert is what arrives and how often, never how long it took, and on
    real time one 1-second ``Retry-After`` or a few backoffs made a check take seconds.
    The clients take their limiters from :attr:`limiters`, a registry of this session's
    own, and the emulator counts its documented rate limits on the same clock.
    """

    def __init__(self, provider: Provider, settings: EmulatorSettings | None = None, *,
                 options: Mapping[str, Any] | None = None, timeout: float = 30.0,
                 clock: Clock | None = None) -> None:
        self.provider = provider
        self.clock: Clock = clock if clock is not None else VirtualClock()
        self.limiters = LimiterRegistry(self.clock)
        self.settings = settings or EmulatorSettings(seed=1)
        self.options = options
        self.timeout = timeout
        self.server: EmulatorServer | None = None
        self._stack = AsyncExitStack()
        self._clients: list[ProviderClient] = []
        self._control: httpx.AsyncClient | None = None
        self.http: httpx.AsyncClient | None = None

    @property
    def url(self) -> str:
        assert self.server is not None, "the session is not started"
        return self.server.url

    async def __aenter__(self) -> Self:
        app = self.provider.emulator(self.settings)
        self.server = await self._stack.enter_async_context(EmulatorServer(app))
        if self.server.emulator is not None:
            self.server.emulator.use_clock(self.clock.now)
        self._control = await self._stack.enter_async_context(
            httpx.AsyncClient(base_url=self.server.url, timeout=self.timeout))
        self.http = await self._stack.enter_async_context(
            httpx.AsyncClient(timeout=self.timeout))
        return self

    async def __aexit__(self, *exc: object) -> None:
        for client in self._clients:
            await client.aclose()
        self._clients.clear()
        await self._stack.aclose()

    # --- control API ---------------------------------------------------------------------

    async def _call(self, method: str, path: str, json: Any = None) -> Any:
        assert self._control is not None, "the session is not started"
        response = await self._control.request(method, "/_emulator/" + path, json=json)
        if response.status_code >= 400:
            raise AssertionError(
                f"emulator control API {method} {path} answered {response.status_code}: "
                f"{response.text[:300]}")
        return response.json()

    async def store(self) -> dict[str, list[dict[str, Any]]]:
        """``{collection: [records]}`` as the emulator holds them."""
        data: dict[str, list[dict[str, Any]]] = await self._call("GET", "store")
        return data

    async def count(self, collection: str) -> int:
        return len((await self.store()).get(collection, []))

    async def requests(self) -> list[dict[str, Any]]:
        """The request log (control API calls excluded)."""
        data = await self._call("GET", "requests")
        if isinstance(data, dict):
            data = data.get("requests", [])
        return list(data)

    async def configure(self, **changes: Any) -> dict[str, Any]:
        """Change emulator settings (a subset of :class:`EmulatorSettings` fields)."""
        data: dict[str, Any] = await self._call("PATCH", "settings", changes)
        return data

    async def reset(self) -> None:
        await self._call("POST", "reset", {})

    async def credentials(self) -> Credentials:
        data = await self._call("GET", "credentials")
        account = {str(k): str(v) for k, v in (data.get("account") or {}).items()}
        return Credentials(access_token=data.get("access_token"), api_key=data.get("api_key"),
                           account=account)

    async def webhook(self, collection: str, record_id: str, change: str = "updated", *,
                      timestamp: int | None = None, url: str | None = None) -> WebhookRequest:
        """A signed delivery for a change to one stored record, as syncd would receive it."""
        spec: dict[str, Any] = {"collection": collection, "id": record_id, "change": change}
        if timestamp is not None:
            spec["timestamp"] = timestamp
        if url is not None:
            spec["url"] = url
        data = await self._call("POST", "webhook", spec)
        return WebhookRequest(headers=dict(data["headers"]), body=data["body"].encode("utf-8"),
                              url=data["url"], received_at=datetime.now(UTC))

    # --- provider clients ----------------------------------------------------------------

    async def client(self, credentials: Credentials | None = None, *,
                     base_url: str | None = None) -> ProviderClient:
        """A provider client on the emulator (closed with the session).

        ``base_url`` points the client elsewhere (a server answering garbage, say) while it
        keeps the emulator's credentials and account options, so it is built exactly as
        for the other checks.
        """
        assert self.http is not None, "the session is not started"
        creds = credentials if credentials is not None else await self.credentials()
        ctx = ClientContext(
            venue_id="venue-kit",
            credentials=creds,
            options=build_options(self.provider, creds.account, self.options),
            http=self.http,
            base_url=base_url if base_url is not None else self.url,
            environment="sandbox",
            limiters=self.limiters,
        )
        client = self.provider.client(ctx)
        self._clients.append(client)
        return client
