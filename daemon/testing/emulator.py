"""The shared toolkit every provider emulator is built on.

An emulator is a local aiohttp app that behaves like a provider's API, so plugins are tested
and demonstrated without the real service. :class:`Emulator` holds what every provider has in
common and each subclass fills in what is provider-specific:

- a store tests can inspect (``collection -> id -> record``; the collections ``product``,
  ``customer`` and ``transaction`` hold what the plugin pushes);
- a request log (:class:`RequestRecord`);
- an idempotency store: the same key with the same body replays the first response, the same
  key with a different body gets the provider's error (:meth:`Emulator.idempotent`);
- a token registry (access tokens with expiry, refresh tokens with optional rotation,
  revocation) and :meth:`Emulator.check_bearer`;
- a per-account token-bucket rate limiter answering with the provider's 429, and a count of
  each account's connections in flight (from arrival to answer, latency included) across
  every caller, refused with the 429 beyond :meth:`Emulator.connection_limit`;
- fault injection honouring every :class:`~daemon.provider.EmulatorSettings` field, driven by
  a seeded ``random.Random`` so a failing run can be replayed;
- the control API under ``/_emulator/`` that tests and the conformance kit use;
- signed webhooks sent to ``settings.webhook_url`` when records change.

Subclass hooks: :meth:`~Emulator.error_response`, :meth:`~Emulator.routes`,
:meth:`~Emulator.account_of`, :meth:`~Emulator.rate_limit`,
:meth:`~Emulator.connection_limit`, :meth:`~Emulator.sign_webhook`,
:meth:`~Emulator.webhook_event`, and optionally :meth:`~Emulator.is_public`,
:meth:`~Emulator.authenticate`, :meth:`~Emulator.unauthorized_response`,
:meth:`~Emulator.rate_limited_response`, :meth:`~Emulator.idempotency_mismatch_response`,
:meth:`~Emulator.default_credentials`, :meth:`~Emulator.check_request`.

Control API (stable: the conformance kit depends on it):

=========================  ==================================================================
``GET /_emulator/store``       ``{collection: [records...]}``
``POST /_emulator/reset``      clear store, requests, idempotency and rate-limit state; tokens
                               stay valid
``DELETE /_emulator/idempotency`` forget every stored idempotency key, as a provider prunes
                               old ones (Stripe after 24 hours); the store stays
``PATCH /_emulator/settings``  JSON subset of EmulatorSettings fields; answers the settings
``GET /_emulator/requests``    the request log
``GET /_emulator/limits``      per account: ``in_flight``, ``peak_in_flight``,
                               ``connection_seconds`` (in-flight count integrated over time),
                               ``requests``, ``rate_limited`` (429s answered)
``GET /_emulator/credentials`` ``{"access_token"|"api_key": ..., "account": {...}}``
``POST /_emulator/provision`` ``{"kind","id","attributes"?}``: create an account resource that
                               exists before syncd connects (a Mailchimp list, a Square
                               location); 404 for kinds the emulator does not have
``POST /_emulator/webhook``    ``{"collection","id","change","timestamp"?,"url"?}``: build and
                               sign the provider's webhook for that change, POST it to
                               ``settings.webhook_url`` when set, answer
                               ``{"url","headers","body"}``
=========================  ==================================================================
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import json
import math
import random
import secrets
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Self

from aiohttp import ClientSession, ClientTimeout, web

from daemon.errors import SyncdError
from daemon.logs import get_logger
from daemon.provider import EmulatorSettings
from daemon.testing.openapi import BROKEN_ON_PURPOSE

__all__ = [
    "ACCOUNT",
    "BATCH_SIZE",
    "EMULATOR_KEY",
    "IDEMPOTENCY_KEY",
    "REPLAYED",
    "UNSAVED",
    "AccountUsage",
    "Emulator",
    "EmulatorServer",
    "RateLimiter",
    "RequestRecord",
    "Token",
    "TokenRegistry",
    "fingerprint",
    "run_emulator",
]

log = get_logger("syncd.emulator")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

#: Where the :class:`Emulator` behind an app is kept (``app[EMULATOR_KEY]``).
EMULATOR_KEY: web.AppKey[Emulator] = web.AppKey("syncd_emulator")

#: Request storage the base reads: the authenticated account, and what a handler records
#: for the request log (the idempotency key it honoured, the records a batch call carried).
ACCOUNT: web.RequestKey[str] = web.RequestKey("syncd_emulator_account", str)
IDEMPOTENCY_KEY: web.RequestKey[str] = web.RequestKey("syncd_emulator_idempotency_key", str)
BATCH_SIZE: web.RequestKey[int] = web.RequestKey("syncd_emulator_batch_size", int)
REPLAYED: web.RequestKey[bool] = web.RequestKey("syncd_emulator_replayed", bool)
#: Set by a handler whose response the provider does not keep under its idempotency key
#: (Stripe keeps none for a request that failed validation).
UNSAVED: web.RequestKey[bool] = web.RequestKey("syncd_emulator_unsaved", bool)

_CONTROL_PREFIX = "/_emulator/"
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


# --- request log --------------------------------------------------------------------------


@dataclass(slots=True)
class RequestRecord:
    """One request an emulator answered (control API calls are not logged)."""

    method: str
    path: str
    query: dict[str, str]
    status: int
    idempotency_key: str | None = None
    #: Records the request carried when it was a batch call, else None.
    batch_size: int | None = None
    account: str | None = None
    time: float = field(default_factory=time.time)
    #: "reset", "reset_after_commit", "timeout", "error", "rate_limit_storm", "slow" or
    #: "malformed" when a fault hit.
    fault: str | None = None

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# --- tokens -------------------------------------------------------------------------------


@dataclass(slots=True)
class Token:
    value: str
    account: str
    kind: Literal["access", "refresh"]
    expires_at: float | None = None
    revoked: bool = False
    scopes: tuple[str, ...] = ()

    def valid(self, now: float | None = None) -> bool:
        if self.revoked:
            return False
        return self.expires_at is None or (now or time.time()) < self.expires_at


class TokenRegistry:
    """Access and refresh tokens an emulator has issued."""

    def __init__(self, prefix: str = "emu") -> None:
        self._prefix = prefix
        self._tokens: dict[str, Token] = {}

    def _new(self, kind: Literal["access", "refresh"], account: str, ttl: float | None,
             scopes: tuple[str, ...], prefix: str | None) -> Token:
        value = f"{prefix or self._prefix}_{kind[0]}_{secrets.token_hex(16)}"
        token = Token(value, account, kind, time.time() + ttl if ttl else None, scopes=scopes)
        self._tokens[value] = token
        return token

    def issue_access(self, account: str, ttl: float | None = None, *,
                     scopes: tuple[str, ...] = (), prefix: str | None = None) -> Token:
        return self._new("access", account, ttl, scopes, prefix)

    def issue_refresh(self, account: str, ttl: float | None = None, *,
                      scopes: tuple[str, ...] = (), prefix: str | None = None) -> Token:
        return self._new("refresh", account, ttl, scopes, prefix)

    def add(self, token: Token) -> Token:
        """Register a token with a fixed value (e.g. a well-known test API key)."""
        self._tokens[token.value] = token
        return token

    def lookup(self, value: str, kind: Literal["access", "refresh"] = "access") -> Token | None:
        """The token if it exists, is of ``kind``, unrevoked and unexpired; else None."""
        token = self._tokens.get(value)
        if token is None or token.kind != kind or not token.valid():
            return None
        return token

    def refresh(self, refresh_value: str, *, access_ttl: float | None, rotate: bool,
                refresh_ttl: float | None = None) -> tuple[Token, Token] | None:
        """Exchange a refresh token: a new access token, and a new refresh token when
        ``rotate`` (the old one is then revoked), else the same one."""
        refresh = self.lookup(refresh_value, "refresh")
        if refresh is None:
            return None
        access = self.issue_access(refresh.account, access_ttl, scopes=refresh.scopes)
        if rotate:
            refresh.revoked = True
            refresh = self.issue_refresh(refresh.account, refresh_ttl, scopes=refresh.scopes)
        return access, refresh

    def revoke(self, value: str) -> bool:
        token = self._tokens.get(value)
        if token is None:
            return False
        token.revoked = True
        return True

    def revoke_account(self, account: str) -> int:
        count = 0
        for token in self._tokens.values():
            if token.account == account and not token.revoked:
                token.revoked = True
                count += 1
        return count


# --- rate limiting ------------------------------------------------------------------------


class RateLimiter:
    """Token buckets per account: ``rate`` tokens a second up to ``burst``, counted on
    ``clock`` (seconds; the real monotonic clock unless the emulator's clients run on
    another, see :meth:`Emulator.use_clock`)."""

    def __init__(self, rate: float, burst: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = rate
        self.burst = max(burst, 1.0)
        self.clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}

    def take(self, account: str, now: float | None = None) -> float:
        """Take one token. Returns 0.0 when allowed, else seconds until a token is free."""
        now = self.clock() if now is None else now
        tokens, last = self._buckets.get(account, (self.burst, now))
        tokens = min(self.burst, tokens + (now - last) * self.rate)
        if tokens >= 1.0:
            self._buckets[account] = (tokens - 1.0, now)
            return 0.0
        self._buckets[account] = (tokens, now)
        return (1.0 - tokens) / self.rate if self.rate > 0 else 60.0

    def reset(self) -> None:
        self._buckets.clear()


@dataclass(slots=True)
class AccountUsage:
    """How one account used the API: connections in flight (now, at most, integrated over
    time), requests answered and 429s among them."""

    in_flight: int = 0
    peak_in_flight: int = 0
    connection_seconds: float = 0.0
    requests: int = 0
    rate_limited: int = 0
    since: float = field(default_factory=time.monotonic)

    def enter(self, now: float) -> None:
        self._integrate(now)
        self.in_flight += 1
        self.peak_in_flight = max(self.peak_in_flight, self.in_flight)

    def leave(self, now: float, status: int) -> None:
        self._integrate(now)
        self.in_flight -= 1
        self.requests += 1
        if status == 429:
            self.rate_limited += 1

    def _integrate(self, now: float) -> None:
        self.connection_seconds += self.in_flight * max(0.0, now - self.since)
        self.since = now

    def to_json(self) -> dict[str, Any]:
        self._integrate(time.monotonic())
        return {"in_flight": self.in_flight, "peak_in_flight": self.peak_in_flight,
                "connection_seconds": round(self.connection_seconds, 3),
                "requests": self.requests, "rate_limited": self.rate_limited}


# --- idempotency --------------------------------------------------------------------------


@dataclass(slots=True)
class _StoredResponse:
    fingerprint: str
    status: int
    body: bytes
    content_type: str
    headers: dict[str, str]


def fingerprint(value: Any) -> str:
    """A stable digest of a request body (JSON-able value or raw bytes)."""
    if isinstance(value, bytes):
        data = value
    else:
        data = json.dumps(value, sort_keys=True, separators=(",", ":"), default=str).encode()
    return hashlib.sha256(data).hexdigest()


class _ConnectionDropped(SyncdError):
    """Raised inside the middleware after the transport was closed on purpose."""


# --- the base class -----------------------------------------------------------------------


class Emulator:
    """Base class of provider emulators. See the module docstring for the contract."""

    #: Provider name, for logs and the token prefix.
    name: str = "emulator"
    #: The account the control API's credentials belong to.
    default_account: str = "default"
    #: Which credential the default account uses: an OAuth access token or an API key.
    credential_kind: Literal["access_token", "api_key"] = "access_token"

    def __init__(self, settings: EmulatorSettings | None = None) -> None:
        self.settings = settings or EmulatorSettings()
        self.store: dict[str, dict[str, dict[str, Any]]] = {}
        self.requests: list[RequestRecord] = []
        self.tokens = TokenRegistry(self.name)
        self.rng = random.Random(self.settings.seed)
        rate, burst = self.rate_limit()
        self.limiter = RateLimiter(rate * self.settings.rate_limit_scale,
                                   max(1.0, burst * self.settings.rate_limit_scale))
        self._idempotency: dict[tuple[str, str], _StoredResponse] = {}
        self._in_flight: set[tuple[str, str]] = set()
        self.usage: dict[str, AccountUsage] = {}
        self._closing = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()
        self._default_token: Token = self._issue_default_token()

    # --- hooks subclasses implement ------------------------------------------------------

    def error_response(self, status: int, code: str, message: str) -> web.Response:
        """An error in the provider's body format."""
        return web.json_response({"error": {"code": code, "message": message}}, status=status)

    def routes(self) -> list[web.RouteDef]:
        """The provider API routes."""
        return []

    def account_of(self, request: web.Request) -> str:
        """The provider account a request acts for (rate limits and idempotency are per
        account). The default: the account of the bearer token, else ``"anonymous"``."""
        account = request.get(ACCOUNT)
        return account if isinstance(account, str) else "anonymous"

    def rate_limit(self) -> tuple[float, float]:
        """The provider's limit per account as ``(requests_per_second, burst)``."""
        return (100.0, 100.0)

    def connection_limit(self) -> int | None:
        """Connections one account may have in flight at once (before ``rate_limit_scale``),
        or None when the provider documents no such limit."""
        return None

    def sign_webhook(self, body: bytes, url: str, timestamp: int) -> dict[str, str]:
        """Headers that sign a webhook delivery of ``body`` to ``url`` at ``timestamp``."""
        raise NotImplementedError

    def webhook_event(self, collection: str, record_id: str, change: str) -> bytes:
        """The provider's webhook body for a change to one record."""
        raise NotImplementedError

    # Optional hooks, with defaults.

    async def check_request(self, request: web.Request) -> web.Response | None:
        """Refuse, before it is handled, a request the provider refuses (checked against
        its published description: see :mod:`daemon.testing.openapi`); None lets it
        through. Runs after authentication and rate limiting. Default: none refused."""
        return None

    def is_public(self, request: web.Request) -> bool:
        """Requests that need no credentials (OAuth endpoints). Control API is always public."""
        return False

    def authenticate(self, request: web.Request) -> str | None:
        """The account of a request's credentials, or None when they are missing or bad."""
        return self.check_bearer(request)

    def unauthorized_response(self) -> web.Response:
        return self.error_response(401, "unauthorized", "The access token is missing, "
                                   "expired, revoked or unknown.")

    def rate_limited_response(self, retry_after: float) -> web.Response:
        """The provider's 429. The default sends ``Retry-After`` in whole seconds; override
        where the provider does otherwise and say which parts are documented."""
        response = self.error_response(429, "rate_limited", "Too many requests.")
        response.headers["Retry-After"] = str(max(1, math.ceil(retry_after)))
        return response

    def server_error_response(self) -> web.Response:
        return self.error_response(500, "internal_error", "An internal error occurred.")

    def malformed_response(self, response: web.Response) -> web.Response:
        """``response`` broken in transit: its status, its body cut in half (a JSON
        document that does not parse), as a proxy that lost the rest would answer."""
        raw = response.body if isinstance(response.body, bytes) else b"{}"
        cut = raw[: max(1, len(raw) // 2)]
        if cut.rstrip().endswith((b"}", b"]")):
            cut = cut.rstrip()[:-1]
        return web.Response(body=cut, status=response.status,
                            content_type=response.content_type or "application/json")

    def idempotency_mismatch_response(self, key: str) -> web.Response:
        """Same idempotency key with a different body."""
        return self.error_response(400, "idempotency_key_reused",
                                   "The idempotency key was used with a different request.")

    def idempotency_in_flight_response(self, key: str) -> web.Response:
        """Same idempotency key while the first request is still being handled."""
        return self.error_response(409, "idempotency_key_in_use",
                                   "A request with this idempotency key is in progress.")

    def default_credentials(self) -> dict[str, Any]:
        """What ``GET /_emulator/credentials`` answers."""
        return {self.credential_kind: self._default_token.value,
                "account": self.default_account_facts()}

    def default_account_facts(self) -> dict[str, str]:
        return {"account": self.default_account}

    def on_reset(self) -> None:
        """Clear subclass state on ``POST /_emulator/reset``."""

    # --- helpers for subclasses ----------------------------------------------------------

    def _issue_default_token(self) -> Token:
        return self.tokens.issue_access(self.default_account, self.settings.access_token_ttl)

    def check_bearer(self, request: web.Request) -> str | None:
        """The account of a valid ``Authorization: Bearer`` token, else None."""
        header = request.headers.get("Authorization", "")
        scheme, _, value = header.partition(" ")
        if scheme.lower() != "bearer" or not value.strip():
            return None
        token = self.tokens.lookup(value.strip())
        return token.account if token else None

    def collection(self, name: str) -> dict[str, dict[str, Any]]:
        return self.store.setdefault(name, {})

    def put(self, collection: str, record_id: str, record: dict[str, Any], *,
            change: str | None = None) -> dict[str, Any]:
        """Store a record; ``change`` ("created", "updated", "deleted") sends a webhook."""
        self.collection(collection)[record_id] = record
        if change:
            self.notify_change(collection, record_id, change)
        return record

    def notify_change(self, collection: str, record_id: str, change: str) -> None:
        """Send the signed webhook for a change, in the background, when a URL is set."""
        url = self.settings.webhook_url
        if not url:
            return
        task = asyncio.get_running_loop().create_task(
            self._deliver_change(url, collection, record_id, change))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _deliver_change(self, url: str, collection: str, record_id: str,
                              change: str) -> None:
        try:
            body = self.webhook_event(collection, record_id, change)
            headers = self.sign_webhook(body, url, int(time.time()))
            await self._post_webhook(url, headers, body)
        except Exception as exc:
            log.warning("emulator.webhook_failed", provider=self.name, url=url,
                        error=type(exc).__name__)

    async def _post_webhook(self, url: str, headers: Mapping[str, str], body: bytes) -> int:
        async with ClientSession(timeout=ClientTimeout(total=10)) as session:
            sent = {"Content-Type": "application/json", **headers}
            async with session.post(url, data=body, headers=sent) as response:
                return response.status

    async def idempotent(self, request: web.Request, key: str | None, body: Any,
                         handle: Callable[[], Awaitable[web.Response]]) -> web.Response:
        """Run ``handle`` at most once per (account, key).

        The same key with the same ``body`` replays the stored response; with a different
        body it gets :meth:`idempotency_mismatch_response`. No key: ``handle`` always runs.
        """
        if not key:
            return await handle()
        request[IDEMPOTENCY_KEY] = key
        slot = (self.account_of(request), key)
        digest = fingerprint(body)
        stored = self._idempotency.get(slot)
        if stored is not None:
            if stored.fingerprint != digest:
                return self.idempotency_mismatch_response(key)
            request[REPLAYED] = True
            return web.Response(body=stored.body, status=stored.status,
                                  content_type=stored.content_type, headers=stored.headers)
        if slot in self._in_flight:
            return self.idempotency_in_flight_response(key)
        self._in_flight.add(slot)
        try:
            response = await handle()
        finally:
            self._in_flight.discard(slot)
        if response.status not in (401, 429) and not request.get(UNSAVED):
            raw = response.body
            data = raw if isinstance(raw, bytes) else b""
            extra = {k: v for k, v in response.headers.items()
                     if k.lower() not in ("content-type", "content-length")}
            self._idempotency[slot] = _StoredResponse(digest, response.status, data,
                                                      response.content_type, extra)
        return response

    # --- the app -------------------------------------------------------------------------

    def app(self) -> web.Application:
        """A fresh aiohttp application serving this emulator."""
        app = web.Application(middlewares=[self._middleware], client_max_size=32 * 1024**2)
        app[EMULATOR_KEY] = self
        app.add_routes(self._control_routes())
        app.add_routes(self.routes())
        app.on_shutdown.append(self._on_shutdown)
        return app

    async def _on_shutdown(self, app: web.Application) -> None:
        await self.close()

    async def close(self) -> None:
        """Release hung requests and cancel pending webhook deliveries."""
        self._closing.set()
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(BaseException):
                await task

    def _drop(self, request: web.Request) -> None:
        transport = request.transport
        if transport is not None:
            transport.abort()

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path.startswith(_CONTROL_PREFIX):
            return await handler(request)
        record = RequestRecord(request.method, request.path, dict(request.query), 0)
        self.requests.append(record)
        try:
            response = await self._handle(request, handler, record)
        except web.HTTPException as exc:  # redirects and aiohttp's own 404/405
            record.status = exc.status
            record.account = record.account or request.get(ACCOUNT)
            raise
        except _ConnectionDropped:
            record.status = 0
            record.account = record.account or request.get(ACCOUNT)
            raise web.HTTPServiceUnavailable() from None  # never written: transport is gone
        record.status = response.status
        record.idempotency_key = request.get(IDEMPOTENCY_KEY)
        record.batch_size = request.get(BATCH_SIZE)
        return response

    async def _handle(self, request: web.Request, handler: Handler,
                      record: RequestRecord) -> web.StreamResponse:
        s = self.settings
        # One draw per knob per request, in a fixed order, so a seed replays a run exactly.
        # The slow and malformed knobs draw only when set, so that the draws of the others
        # stay what they were for a given seed.
        draws = [self.rng.random() for _ in range(5)]
        if s.slow_rate > 0 or s.malformed_rate > 0:
            draws += [self.rng.random(), self.rng.random()]
        # A connection counts against its account from arrival to answer, latency included.
        public = self.is_public(request)
        account = None if public else self.authenticate(request)
        usage = self.usage.setdefault(account or "anonymous", AccountUsage())
        limit = self.connection_limit()
        if (s.enforce_rate_limits and account is not None and limit is not None
                and usage.in_flight >= max(1, int(limit * s.rate_limit_scale))):
            usage.enter(time.monotonic())
            usage.leave(time.monotonic(), 429)
            record.account = account
            return self.rate_limited_response(1.0)
        usage.enter(time.monotonic())
        status = 0
        try:
            response = await self._answer(request, handler, record, draws=draws,
                                           public=public, account=account)
            status = response.status
            return response
        finally:
            usage.leave(time.monotonic(), status)

    async def _answer(self, request: web.Request, handler: Handler, record: RequestRecord, *,
                      draws: list[float], public: bool, account: str | None
                      ) -> web.StreamResponse:
        s = self.settings
        if s.latency > 0:
            await asyncio.sleep(s.latency)
        if len(draws) > 5 and draws[5] < s.slow_rate:
            record.fault = "slow"
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._closing.wait(), s.slow_seconds)
        if draws[0] < s.reset_rate:
            record.fault = "reset"
            self._drop(request)
            raise _ConnectionDropped
        if draws[1] < s.timeout_rate:
            record.fault = "timeout"
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._closing.wait(), s.hang_seconds)
            self._drop(request)
            raise _ConnectionDropped
        if draws[2] < s.rate_limit_storm:
            record.fault = "rate_limit_storm"
            return self.rate_limited_response(s.storm_retry_after)
        if draws[3] < s.error_rate:
            record.fault = "error"
            return self.server_error_response()

        if not public:
            if account is None:
                return self.unauthorized_response()
            request[ACCOUNT] = account
        account_id = self.account_of(request)
        record.account = account_id
        # The documented limits are the API's; OAuth endpoints are the authorization
        # server's (another host at every provider) and are not counted against them.
        if s.enforce_rate_limits and not public:
            wait = self.limiter.take(account_id)
            if wait > 0:
                return self.rate_limited_response(wait)

        refused = await self.check_request(request)
        if refused is not None:
            return refused
        try:
            response = await handler(request)
        except web.HTTPException:
            raise
        except ConnectionResetError:  # the caller went away while its body was read
            raise _ConnectionDropped from None
        except Exception as exc:
            log.exception("emulator.handler_failed", provider=self.name, path=request.path,
                          error=type(exc).__name__)
            response = self.server_error_response()
        # Only requests that can commit something lose their answer "after commit"; a lost
        # read is a plain connection reset (``reset_rate``).
        if draws[4] < s.reset_after_commit_rate and request.method not in _SAFE_METHODS:
            record.fault = "reset_after_commit"
            record.status = response.status
            self._drop(request)
            raise _ConnectionDropped
        if len(draws) > 5 and draws[6] < s.malformed_rate and isinstance(response, web.Response):
            record.fault = "malformed"
            request[BROKEN_ON_PURPOSE] = True
            return self.malformed_response(response)
        return response

    # --- control API ---------------------------------------------------------------------

    def _control_routes(self) -> list[web.RouteDef]:
        p = _CONTROL_PREFIX
        return [
            web.get(p + "store", self._control_store),
            web.post(p + "reset", self._control_reset),
            web.delete(p + "idempotency", self._control_forget_idempotency),
            web.patch(p + "settings", self._control_settings),
            web.get(p + "settings", self._control_get_settings),
            web.get(p + "requests", self._control_requests),
            web.get(p + "limits", self._control_limits),
            web.get(p + "credentials", self._control_credentials),
            web.post(p + "webhook", self._control_webhook),
            web.post(p + "provision", self._control_provision),
        ]

    def provision(self, kind: str, rid: str, attrs: Mapping[str, Any]) -> dict[str, Any] | None:
        """Create an account resource that exists before syncd connects (a Mailchimp list,
        a Square location), as a person sets up a sandbox by hand. Answers the resource, or
        None when this emulator has no such kind. Subclasses override."""
        return None

    async def _control_provision(self, request: web.Request) -> web.Response:
        try:
            body = await request.json()
            kind, rid = str(body["kind"]), str(body["id"])
        except (ValueError, KeyError, TypeError):
            return web.json_response({"error": "send {\"kind\": ..., \"id\": ...}"},
                                     status=400)
        made = self.provision(kind, rid, body.get("attributes") or {})
        if made is None:
            return web.json_response({"error": f"no resource kind {kind!r} here"}, status=404)
        return web.json_response(made)

    async def _control_store(self, request: web.Request) -> web.Response:
        return web.json_response({name: list(records.values())
                                  for name, records in self.store.items()})

    def reset(self) -> None:
        """Clear store, request log, idempotency and rate-limit state; tokens stay valid."""
        self.store.clear()
        self.requests.clear()
        self._idempotency.clear()
        self._in_flight.clear()
        self.usage = {a: AccountUsage(in_flight=u.in_flight) for a, u in self.usage.items()
                      if u.in_flight}
        self.limiter.reset()
        self.on_reset()

    def use_clock(self, clock: Callable[[], float]) -> None:
        """Count the documented rate limits on ``clock`` (seconds) instead of the real
        monotonic clock: the time the clients run on, when they run on virtual time (the
        conformance kit's), so that a client keeping to the limits in its time is not
        refused in another."""
        self.limiter.clock = clock

    async def _control_reset(self, request: web.Request) -> web.Response:
        self.reset()
        return web.json_response({"ok": True})

    def forget_idempotency(self) -> int:
        """Forget every stored idempotency key (the provider pruned them); the store stays.
        Answers how many were forgotten."""
        count = len(self._idempotency)
        self._idempotency.clear()
        return count

    async def _control_forget_idempotency(self, request: web.Request) -> web.Response:
        return web.json_response({"forgotten": self.forget_idempotency()})

    def settings_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self.settings)

    def update_settings(self, changes: Mapping[str, Any]) -> EmulatorSettings:
        """Apply a subset of EmulatorSettings fields. Raises ValueError on unknown fields."""
        known = {f.name: f for f in dataclasses.fields(EmulatorSettings)}
        unknown = sorted(set(changes) - set(known))
        if unknown:
            raise ValueError(f"unknown settings: {', '.join(unknown)}")
        self.settings = dataclasses.replace(self.settings, **dict(changes))
        if "seed" in changes:
            self.rng.seed(self.settings.seed)
        if "rate_limit_scale" in changes:
            rate, burst = self.rate_limit()
            scale = self.settings.rate_limit_scale
            self.limiter = RateLimiter(rate * scale, max(1.0, burst * scale),
                                       self.limiter.clock)
        return self.settings

    async def _control_settings(self, request: web.Request) -> web.Response:
        try:
            changes = await request.json()
            if not isinstance(changes, dict):
                raise ValueError("settings must be a JSON object")
            self.update_settings(changes)
        except (ValueError, TypeError) as exc:
            return web.json_response({"error": str(exc)}, status=400)
        return web.json_response(self.settings_json())

    async def _control_get_settings(self, request: web.Request) -> web.Response:
        return web.json_response(self.settings_json())

    async def _control_requests(self, request: web.Request) -> web.Response:
        return web.json_response([r.to_json() for r in self.requests])

    async def _control_limits(self, request: web.Request) -> web.Response:
        return web.json_response({account: usage.to_json()
                                  for account, usage in self.usage.items()})

    async def _control_credentials(self, request: web.Request) -> web.Response:
        if not self._default_token.valid():
            self._default_token = self._issue_default_token()
        return web.json_response(self.default_credentials())

    async def _control_webhook(self, request: web.Request) -> web.Response:
        try:
            spec = await request.json()
            collection, record_id = str(spec["collection"]), str(spec["id"])
            change = str(spec.get("change", "updated"))
            timestamp = int(spec.get("timestamp") or time.time())
        except (ValueError, KeyError, TypeError) as exc:
            return web.json_response({"error": f"bad webhook request: {exc}"}, status=400)
        url = str(spec.get("url") or self.settings.webhook_url or "http://127.0.0.1/webhook")
        body = self.webhook_event(collection, record_id, change)
        headers = self.sign_webhook(body, url, timestamp)
        delivered: int | None = None
        if self.settings.webhook_url:
            try:
                delivered = await self._post_webhook(self.settings.webhook_url, headers, body)
            except Exception as exc:
                log.warning("emulator.webhook_failed", provider=self.name,
                            error=type(exc).__name__)
        return web.json_response({"url": url, "headers": headers,
                                  "body": body.decode("utf-8"), "delivered_status": delivered})


# --- running ------------------------------------------------------------------------------


class EmulatorServer:
    """Serve an app (or an :class:`Emulator`) on 127.0.0.1 for the length of a block.

    >>> async with EmulatorServer(provider.emulator(EmulatorSettings())) as server:
    ...     httpx.get(server.url + "/_emulator/store")
    """

    def __init__(self, app: web.Application | Emulator, *, host: str = "127.0.0.1",
                 port: int = 0) -> None:
        self.app = app.app() if isinstance(app, Emulator) else app
        self.host = host
        self.port = port
        self.url = ""
        self._runner: web.AppRunner | None = None

    @property
    def emulator(self) -> Emulator | None:
        """The :class:`Emulator` behind the app, when there is one."""
        return self.app.get(EMULATOR_KEY)

    async def __aenter__(self) -> Self:
        self._runner = web.AppRunner(self.app, shutdown_timeout=1.0, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        host, port = self._runner.addresses[0][:2]
        self.port = int(port)
        self.url = f"http://{host}:{self.port}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        emulator = self.emulator
        if emulator is not None:
            await emulator.close()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None


def run_emulator(app: web.Application, host: str = "127.0.0.1", port: int = 12111) -> None:
    """Serve ``app`` until interrupted (for ``syncd emulate``)."""
    web.run_app(app, host=host, port=port, print=lambda line: log.info(
        "emulator.listening", host=host, port=port))
