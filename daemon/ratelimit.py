"""Client-side rate limiting for one provider account.

A :class:`RateLimiter` combines three things every provider documents in some form:

- a token bucket (``rate`` tokens per second, at most ``burst`` saved up);
- a concurrency cap (Mailchimp allows 10 simultaneous connections per user);
- any number of extra sliding :class:`Window` limits, optionally scoped to one kind of call
  (QuickBooks: 500 requests a minute per realm, and 40 batch calls a minute per realm and app).

After a 429 the HTTP layer calls :meth:`RateLimiter.pause` and every request of that
account, running or waiting, backs off together until then.

This is the fast path, in one process. Where several processes (replicas) call the same
account, a limiter also holds a :class:`SharedAccount`: the account's limits as every replica
shares them (:mod:`daemon.ratelimit_shared` keeps them in Postgres). A request then needs a
local slot and token *and* a shared slot and token, so the process never exceeds its share of
the account, and a pause one replica sets after a 429 holds every replica.

Time comes from an injectable :class:`Clock`, so tests drive the limiter with a
:class:`ManualClock` and assert exact behaviour without sleeping. Limiters are shared per
account through a :class:`LimiterRegistry` (keyed by provider and account id), built once by
whoever composes the process and passed to provider clients in their
:class:`~daemon.provider.ClientContext`.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import math
import re
import time
from collections import deque
from collections.abc import AsyncIterator, Collection, Iterable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from daemon.provider import ClientContext, RateLimit

__all__ = [
    "Clock",
    "LimiterRegistry",
    "ManualClock",
    "MonotonicClock",
    "RateLimiter",
    "SharedAccount",
    "SharedLimits",
    "Window",
    "extra_windows",
    "registry_for",
    "windows_from_extra",
]

_UNITS: Mapping[str, float] = {"second": 1.0, "minute": 60.0, "hour": 3600.0, "day": 86400.0}
_EXTRA_KEY = re.compile(r"^(?P<scope>[a-z][a-z0-9_]*?)_per_(?P<unit>second|minute|hour|day)$")
#: The scope name in :attr:`RateLimit.extra` keys that means "every request".
ALL_REQUESTS = "requests"


class Clock(Protocol):
    """Monotonic time in seconds and a way to wait for it."""

    def now(self) -> float: ...

    async def sleep(self, seconds: float) -> None: ...


class MonotonicClock:
    """The real clock: :func:`time.monotonic` and :func:`asyncio.sleep`."""

    def now(self) -> float:
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds))


class ManualClock:
    """Virtual time for tests: sleepers wake only when :meth:`advance` passes their deadline.

    With ``auto_advance=True`` a sleep moves time forward at once instead (for one task
    at a time, such as a client retrying), and :attr:`sleeps` records how long it waited.
    """

    def __init__(self, start: float = 0.0, *, auto_advance: bool = False) -> None:
        self._now = start
        self.auto_advance = auto_advance
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._seq = itertools.count()
        #: Every duration passed to :meth:`sleep`, in call order.
        self.sleeps: list[float] = []

    def now(self) -> float:
        return self._now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        if self.auto_advance:
            self._now += max(0.0, seconds)
            await asyncio.sleep(0)
            return
        if seconds <= 0:
            await asyncio.sleep(0)
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (self._now + seconds, next(self._seq), fut))
        await fut

    @property
    def pending(self) -> int:
        """Sleepers not woken yet."""
        return sum(1 for _, _, f in self._sleepers if not f.done())

    async def settle(self, rounds: int = 20) -> None:
        """Let ready tasks run until they block again."""
        for _ in range(rounds):
            await asyncio.sleep(0)

    async def advance(self, seconds: float) -> None:
        """Move time forward, waking sleepers in deadline order, then let tasks run."""
        target = self._now + seconds
        await self.settle()
        while self._sleepers and self._sleepers[0][0] <= target:
            deadline, _, fut = heapq.heappop(self._sleepers)
            self._now = max(self._now, deadline)
            if not fut.done():
                fut.set_result(None)
            await self.settle()
        self._now = target
        await self.settle()


@dataclass(frozen=True, slots=True)
class Window:
    """At most ``limit`` calls in any ``period`` seconds; ``scope`` None means every call."""

    limit: int
    period: float
    scope: str | None = None

    def __post_init__(self) -> None:
        if self.limit < 1 or self.period <= 0:
            raise ValueError("a window needs limit >= 1 and period > 0")


def extra_windows(extra: Mapping[str, float]) -> tuple[tuple[str, Window], ...]:
    """``(key, window)`` for each :attr:`RateLimit.extra` key named ``<scope>_per_<unit>``.

    ``requests_per_minute: 500`` limits every call; ``batch_per_minute: 40`` limits calls made
    with ``scopes={"batch"}``. Units are second, minute, hour and day. Other keys are ignored
    (they may document facts that are not rate windows).
    """
    out: list[tuple[str, Window]] = []
    for key, value in extra.items():
        m = _EXTRA_KEY.match(key)
        if m is None or value < 1:
            continue
        scope = None if m["scope"] == ALL_REQUESTS else m["scope"]
        out.append((key, Window(limit=int(value), period=_UNITS[m["unit"]], scope=scope)))
    return tuple(out)


def windows_from_extra(extra: Mapping[str, float]) -> tuple[Window, ...]:
    """The windows of :func:`extra_windows`, without their keys."""
    return tuple(w for _, w in extra_windows(extra))


class SharedAccount(Protocol):
    """One account's limits as every process calling it shares them.

    A request holds a shared slot (when concurrency is shared) for its whole duration and
    takes one shared token for the buckets its ``scopes`` select; a 429 pauses the account
    for everyone. Each method waits as long as it must; a failure to reach the shared state
    raises :class:`~daemon.provider.ProviderError` (retryable).
    """

    async def acquire(self, scopes: Collection[str]) -> None:
        """A token of the buckets ``scopes`` select, then a slot (when shared)."""
        ...

    async def release_slot(self) -> None: ...

    async def pause_for(self, seconds: float) -> None: ...


class SharedLimits(Protocol):
    """Where shared accounts come from (:class:`daemon.ratelimit_shared.PostgresLimits`)."""

    def account(self, provider: str, account: str, limit: RateLimit) -> SharedAccount: ...


class _SlidingWindow:
    __slots__ = ("spec", "stamps")

    def __init__(self, spec: Window) -> None:
        self.spec = spec
        self.stamps: deque[float] = deque()

    def applies(self, scopes: Collection[str]) -> bool:
        return self.spec.scope is None or self.spec.scope in scopes

    def wait(self, now: float) -> float:
        while self.stamps and self.stamps[0] <= now - self.spec.period:
            self.stamps.popleft()
        if len(self.stamps) < self.spec.limit:
            return 0.0
        return self.stamps[0] + self.spec.period - now

    def take(self, now: float) -> None:
        self.stamps.append(now)


class RateLimiter:
    """Token bucket + concurrency cap + sliding windows + shared pause, for one account."""

    def __init__(
        self,
        rate: float,
        burst: int = 1,
        max_concurrency: int = 4,
        windows: Iterable[Window] = (),
        *,
        clock: Clock | None = None,
        shared: SharedAccount | None = None,
    ) -> None:
        if rate <= 0 or burst < 1 or max_concurrency < 1:
            raise ValueError("rate must be > 0, burst and max_concurrency >= 1")
        self.rate = float(rate)
        self.burst = int(burst)
        self.max_concurrency = int(max_concurrency)
        self.clock: Clock = clock or MonotonicClock()
        #: The account's limits across processes, or None when this process is alone.
        self.shared = shared
        self._windows = [_SlidingWindow(w) for w in windows]
        self._tokens = float(burst)
        self._stamp = self.clock.now()
        self._paused_until = -math.inf
        self._in_flight = 0
        self._slot_waiters: deque[asyncio.Future[None]] = deque()

    @classmethod
    def from_rate_limit(
        cls,
        limit: RateLimit,
        *,
        scale: float = 1.0,
        clock: Clock | None = None,
        shared: SharedAccount | None = None,
    ) -> RateLimiter:
        """A limiter for a provider's declared :class:`~daemon.provider.RateLimit`.

        ``scale`` multiplies every rate (tests and emulators may tighten or loosen them).
        """
        windows = [
            Window(max(1, int(w.limit * scale)), w.period, w.scope)
            for w in windows_from_extra(limit.extra)
        ]
        return cls(
            rate=limit.requests_per_second * scale,
            burst=max(1, int(limit.burst * scale)),
            max_concurrency=limit.max_concurrency,
            windows=windows,
            clock=clock,
            shared=shared,
        )

    # --- state -------------------------------------------------------------------------

    @property
    def in_flight(self) -> int:
        return self._in_flight

    @property
    def paused_until(self) -> float | None:
        """The monotonic time every request waits for, or None when not paused."""
        return self._paused_until if self._paused_until > self.clock.now() else None

    def pause_until(self, deadline: float) -> None:
        """Hold every request of this account until ``deadline`` (monotonic seconds)."""
        self._paused_until = max(self._paused_until, deadline)

    def pause_for(self, seconds: float) -> None:
        """Hold every request of this account in this process for ``seconds`` from now."""
        self.pause_until(self.clock.now() + max(0.0, seconds))

    async def pause(self, seconds: float) -> None:
        """After a 429: hold the account for ``seconds`` here and, when shared, in every
        process that calls it."""
        self.pause_for(seconds)
        if self.shared is not None:
            await self.shared.pause_for(seconds)

    # --- acquiring ---------------------------------------------------------------------

    def _refill(self, now: float) -> None:
        if now > self._stamp:
            self._tokens = min(float(self.burst), self._tokens + (now - self._stamp) * self.rate)
        self._stamp = max(self._stamp, now)

    def _wait_needed(self, now: float, scopes: Collection[str]) -> float:
        self._refill(now)
        wait = max(0.0, self._paused_until - now)
        if self._tokens < 1.0:
            wait = max(wait, (1.0 - self._tokens) / self.rate)
        for w in self._windows:
            if w.applies(scopes):
                wait = max(wait, w.wait(now))
        return wait

    async def _acquire_slot(self) -> None:
        while self._in_flight >= self.max_concurrency:
            fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._slot_waiters.append(fut)
            try:
                await fut
            except BaseException:
                if fut.done() and not fut.cancelled():
                    self._wake_one()  # pass the wake-up on rather than lose it
                raise
        self._in_flight += 1

    def _wake_one(self) -> None:
        while self._slot_waiters:
            fut = self._slot_waiters.popleft()
            if not fut.done():
                fut.set_result(None)
                return

    def _release_slot(self) -> None:
        self._in_flight -= 1
        self._wake_one()

    async def _take_token(self, scopes: Collection[str]) -> None:
        while True:
            now = self.clock.now()
            wait = self._wait_needed(now, scopes)
            if wait <= 0:
                self._tokens -= 1.0
                for w in self._windows:
                    if w.applies(scopes):
                        w.take(now)
                return
            await self.clock.sleep(wait)

    @asynccontextmanager
    async def slot(self, scopes: Collection[str] = ()) -> AsyncIterator[None]:
        """Hold a concurrency slot and one token for the duration of one request: this
        process's, then (when shared) the account's across every process."""
        await self._acquire_slot()
        try:
            await self._take_token(scopes)
            if self.shared is None:
                yield
                return
            # The token first: a request waiting for the account's rate must not hold one of
            # its connections meanwhile (another replica could use it).
            await self.shared.acquire(scopes)
            try:
                yield
            finally:
                await asyncio.shield(self.shared.release_slot())
        finally:
            self._release_slot()

    async def acquire(self, scopes: Collection[str] = ()) -> None:
        """Wait for one token (without holding a concurrency slot afterwards)."""
        async with self.slot(scopes):
            pass


class LimiterRegistry:
    """One :class:`RateLimiter` per (provider, account), shared by that account's clients.

    With ``shared`` (built once per process, e.g. :class:`~daemon.ratelimit_shared.
    PostgresLimits`) each limiter also enforces the account's limits across processes.
    """

    def __init__(self, clock: Clock | None = None, *, shared: SharedLimits | None = None
                 ) -> None:
        self._clock = clock
        self.shared = shared
        self._limiters: dict[tuple[str, str], RateLimiter] = {}

    def get(self, provider: str, account: str, limit: RateLimit) -> RateLimiter:
        key = (provider, account)
        limiter = self._limiters.get(key)
        if limiter is None:
            shared = (self.shared.account(provider, account, limit)
                      if self.shared is not None else None)
            limiter = RateLimiter.from_rate_limit(limit, clock=self._clock, shared=shared)
            self._limiters[key] = limiter
        return limiter

    def __len__(self) -> int:
        return len(self._limiters)


def registry_for(ctx: ClientContext) -> LimiterRegistry:
    """The registry a client takes its account's limiter from: the one its context carries
    (the runtime's), else a new one of the client's own (in-process limits of that client
    only: tests and the conformance kit)."""
    return ctx.limiters if ctx.limiters is not None else LimiterRegistry()
