"""Provider limits shared by every replica, kept in Postgres.

One provider account often serves many venues, and their jobs run on several replicas at
once. :class:`PostgresLimits` (built once per process and handed to a
:class:`~daemon.ratelimit.LimiterRegistry`) gives each account's limiter a
:class:`PostgresAccount` that enforces the account's limits across all of them:

- **rate and window quotas**: token buckets refilled by time, one row per (account, bucket)
  in ``rate_limit_buckets``. The request rate is a bucket of ``rate x margin`` tokens a
  second holding a fifth of ``burst`` (the provider's own bucket keeps the rest in reserve
  for jitter). A window quota (500 a minute) is a bucket holding a small
  share of the window and refilling with the rest over the window, so no window of that
  length can ever see more than the quota. A process takes tokens in small *grants* (at most
  ``grant_seconds`` of the slowest bucket's rate, and no more than it has requests waiting)
  and spends them locally; a grant left unspent expires after ``grant_ttl_seconds``.
- **concurrency**: slots leased per process in ``rate_limit_slots``; a request holds one for
  its whole duration. A process renews its leases while it holds any; a process that dies
  stops renewing and its slots free up after ``slot_lease_seconds``.
- **pause**: a 429 with Retry-After seen by one process sets ``paused_until`` on the
  account's row; every process's next grant waits for it.

Each grant or lease is one round trip to a plpgsql function that locks the account's row,
so decisions for one account are made one at a time; a request that finds nobody else of
its process waiting takes its tokens and its slot in a single trip. Limits declared per connection
(:class:`~daemon.provider.LimitScope.CONNECTION`) are not shared: the in-process limiter
enforces them alone.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import random
import secrets
import socket
import time
from collections.abc import Collection
from dataclasses import dataclass

import asyncpg

from daemon.logs import get_logger
from daemon.provider import CONCURRENCY, RATE, ErrorKind, LimitScope, ProviderError, RateLimit
from daemon.ratelimit import extra_windows
from daemon.sql import queries

__all__ = ["Bucket", "PostgresAccount", "PostgresLimits", "SharedLimitSettings", "buckets_for"]

log = get_logger("syncd.ratelimit")
_Q = queries("ratelimit.sql")
_DB_ERRORS = (OSError, asyncpg.PostgresError, asyncpg.InterfaceError)
#: Share of a window quota a bucket may hold at once; the rest refills over the window.
_WINDOW_BURST_SHARE = 0.02
#: Share of the provider's burst the shared rate bucket may hold. The provider's own bucket
#: keeps the rest in reserve, so requests that reach it bunched together (network or CPU
#: jitter) still find tokens there: the shared limiter never drains it.
_RATE_BURST_SHARE = 0.2


@dataclass(frozen=True, slots=True)
class SharedLimitSettings:
    """How the shared limiter trades round trips against precision."""

    #: Fraction of each documented rate used, leaving room for clock and network jitter.
    margin: float = 0.97
    #: Largest grant, in seconds of the slowest bucket's rate.
    grant_seconds: float = 0.2
    #: Unspent granted tokens expire after this long.
    grant_ttl_seconds: float = 0.5
    #: A process's concurrency slots expire this long after their last renewal.
    slot_lease_seconds: float = 30.0
    #: Mean wait between two tries for a slot while the account's slots are all held.
    slot_poll_seconds: float = 0.02


@dataclass(frozen=True, slots=True)
class Bucket:
    """A shared token bucket: ``rate`` tokens a second, at most ``capacity``; it applies to
    every request when ``scope`` is None, else to requests made with that scope."""

    name: str
    rate: float
    capacity: float
    scope: str | None = None


def buckets_for(limit: RateLimit, margin: float = 1.0) -> tuple[Bucket, ...]:
    """The shared buckets that enforce ``limit``'s account- and app-wide rate and windows."""
    out: list[Bucket] = []
    if limit.scope_of(RATE) is not LimitScope.CONNECTION and limit.requests_per_second > 0:
        out.append(Bucket(RATE, limit.requests_per_second * margin,
                          float(max(1, math.ceil(limit.burst * _RATE_BURST_SHARE)))))
    for key, window in extra_windows(limit.extra):
        if limit.scope_of(key) is LimitScope.CONNECTION:
            continue
        # At most `capacity + rate x period` can pass in any period: keep that <= the quota.
        capacity = float(max(1, math.floor(window.limit * _WINDOW_BURST_SHARE)))
        refill = max(window.limit - capacity, 0.5) / window.period
        out.append(Bucket(key, refill * margin, capacity, window.scope))
    return tuple(out)


class _Stock:
    __slots__ = ("expires", "tokens")

    def __init__(self) -> None:
        self.tokens = 0
        self.expires = 0.0


class PostgresAccount:
    """One account's shared limits (see the module docstring); a
    :class:`~daemon.ratelimit.SharedAccount`."""

    def __init__(self, owner: PostgresLimits, provider: str, account: str,
                 limit: RateLimit) -> None:
        self._owner = owner
        self.provider = provider
        #: The account's key in Postgres: provider and the client's account key (no secret).
        self.key = f"{provider}:{account}"
        self.buckets = buckets_for(limit, owner.settings.margin)
        self.max_concurrency = max(1, limit.max_concurrency)
        self.shares_concurrency = limit.scope_of(CONCURRENCY) is not LimitScope.CONNECTION
        self._grant_lock = asyncio.Lock()
        self._slot_lock = asyncio.Lock()
        self._stock: dict[tuple[str, ...], _Stock] = {}
        self._waiting: dict[tuple[str, ...], int] = {}
        #: Round trips made, by kind, for the cost per request.
        self.calls = {"acquire": 0, "grant": 0, "take_slot": 0, "release_slot": 0, "pause": 0}

    # --- tokens -----------------------------------------------------------------------

    def _selected(self, scopes: Collection[str]) -> tuple[Bucket, ...]:
        return tuple(b for b in self.buckets if b.scope is None or b.scope in scopes)

    def _grant_size(self, buckets: tuple[Bucket, ...]) -> int:
        slowest = min(b.rate for b in buckets)
        return max(1, math.floor(slowest * self._owner.settings.grant_seconds))

    def _spend(self, key: tuple[str, ...]) -> bool:
        stock = self._stock.get(key)
        if stock is None or stock.tokens <= 0:
            return False
        if stock.expires <= time.monotonic():
            stock.tokens = 0
            return False
        stock.tokens -= 1
        return True

    async def acquire_token(self, scopes: Collection[str]) -> None:
        buckets = self._selected(scopes)
        if not buckets:
            return
        key = tuple(b.name for b in buckets)
        if self._spend(key):
            return
        self._waiting[key] = self._waiting.get(key, 0) + 1
        try:
            while True:
                async with self._grant_lock:
                    if self._spend(key):
                        return
                    want = min(self._grant_size(buckets), self._waiting[key])
                    granted, wait = await self._grant(buckets, want)
                    if granted > 0:
                        stock = self._stock.setdefault(key, _Stock())
                        stock.tokens += granted - 1
                        stock.expires = time.monotonic() + self._owner.settings.grant_ttl_seconds
                        return
                    # Wait under the lock: every other request of this account waits too.
                    await asyncio.sleep(max(0.001, wait))
        finally:
            self._waiting[key] -= 1

    async def acquire(self, scopes: Collection[str]) -> None:
        buckets = self._selected(scopes)
        key = tuple(b.name for b in buckets)
        if (buckets and self.shares_concurrency and not self._grant_lock.locked()
                and not self._slot_lock.locked() and not self._spend(key)):
            # Nobody else here is waiting for this account: its token and a slot in one trip
            # (one token: a grant never exceeds the requests waiting).
            async with self._grant_lock, self._slot_lock:
                self.calls["acquire"] += 1
                row = await self._owner.fetchrow(
                    _Q["acquire"], self.key, self.provider, [b.name for b in buckets],
                    [b.rate for b in buckets], [b.capacity for b in buckets],
                    1, self._owner.holder, self.max_concurrency,
                    self._owner.settings.slot_lease_seconds)
            assert row is not None
            granted = int(row["granted"])
            if granted > 0:
                stock = self._stock.setdefault(key, _Stock())
                stock.tokens += granted - 1
                stock.expires = time.monotonic() + self._owner.settings.grant_ttl_seconds
                if row["slotted"]:
                    self._owner.slot_taken()
                else:
                    await self.acquire_slot()
                return
        await self.acquire_token(scopes)
        await self.acquire_slot()

    async def _grant(self, buckets: tuple[Bucket, ...], want: int) -> tuple[int, float]:
        self.calls["grant"] += 1
        row = await self._owner.fetchrow(
            _Q["grant"], self.key, self.provider, [b.name for b in buckets],
            [b.rate for b in buckets], [b.capacity for b in buckets], want)
        assert row is not None
        return int(row["granted"]), float(row["wait_seconds"])

    # --- concurrency ------------------------------------------------------------------

    async def acquire_slot(self) -> None:
        if not self.shares_concurrency:
            return
        settings = self._owner.settings
        async with self._slot_lock:  # one poller per account per process
            while True:
                self.calls["take_slot"] += 1
                taken = await self._owner.fetchval(
                    _Q["take_slot"], self.key, self.provider, self._owner.holder,
                    self.max_concurrency, settings.slot_lease_seconds)
                if taken:
                    break
                # Every process polls at the same pace (with jitter), whatever it did last,
                # so the one that just released a slot has no edge in taking it back.
                await asyncio.sleep(settings.slot_poll_seconds * (0.5 + random.random()))
        self._owner.slot_taken()

    async def release_slot(self) -> None:
        if not self.shares_concurrency:
            return
        self._owner.slot_released()
        self.calls["release_slot"] += 1
        try:
            await self._owner.execute(_Q["release_slot"], self.key, self._owner.holder)
        except ProviderError as exc:
            # The lease expires on its own; the slot is only held until then.
            log.warning("ratelimit.release_failed", provider=self.provider, error=str(exc))

    # --- pause ------------------------------------------------------------------------

    async def pause_for(self, seconds: float) -> None:
        if seconds <= 0:
            return
        self.calls["pause"] += 1
        for stock in self._stock.values():
            stock.tokens = 0
        await self._owner.fetchval(_Q["pause"], self.key, self.provider, seconds)
        log.info("ratelimit.account_paused", provider=self.provider, seconds=round(seconds, 3))


class PostgresLimits:
    """Every account's shared limits for one process (a
    :class:`~daemon.ratelimit.SharedLimits`). Build one per process, pass it to the
    :class:`~daemon.ratelimit.LimiterRegistry`, and :meth:`close` it at shutdown."""

    def __init__(self, pool: asyncpg.Pool, settings: SharedLimitSettings | None = None, *,
                 holder: str | None = None) -> None:
        self.pool = pool
        self.settings = settings or SharedLimitSettings()
        #: This process's name on its slot leases.
        self.holder = holder or f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"
        self._accounts: dict[str, PostgresAccount] = {}
        self._held = 0
        self._renewer: asyncio.Task[None] | None = None

    def account(self, provider: str, account: str, limit: RateLimit) -> PostgresAccount:
        key = f"{provider}:{account}"
        found = self._accounts.get(key)
        if found is None:
            found = PostgresAccount(self, provider, account, limit)
            self._accounts[key] = found
        return found

    @property
    def round_trips(self) -> dict[str, int]:
        """Round trips made to Postgres by kind, summed over accounts."""
        out: dict[str, int] = {}
        for acct in self._accounts.values():
            for kind, n in acct.calls.items():
                out[kind] = out.get(kind, 0) + n
        return out

    # --- database ---------------------------------------------------------------------

    async def fetchrow(self, sql: str, *args: object) -> asyncpg.Record | None:
        try:
            return await self.pool.fetchrow(sql, *args)
        except _DB_ERRORS as exc:
            raise self._unavailable(exc) from None

    async def fetchval(self, sql: str, *args: object) -> object:
        try:
            return await self.pool.fetchval(sql, *args)
        except _DB_ERRORS as exc:
            raise self._unavailable(exc) from None

    async def execute(self, sql: str, *args: object) -> None:
        try:
            await self.pool.execute(sql, *args)
        except _DB_ERRORS as exc:
            raise self._unavailable(exc) from None

    @staticmethod
    def _unavailable(exc: BaseException) -> ProviderError:
        return ProviderError(f"shared rate limits unavailable: {type(exc).__name__}",
                             ErrorKind.RETRYABLE)

    # --- leases -----------------------------------------------------------------------

    def slot_taken(self) -> None:
        self._held += 1
        if self._renewer is None or self._renewer.done():
            self._renewer = asyncio.get_running_loop().create_task(
                self._renew(), name="ratelimit-renew")

    def slot_released(self) -> None:
        self._held = max(0, self._held - 1)

    async def _renew(self) -> None:
        period = self.settings.slot_lease_seconds / 3
        while self._held > 0:
            await asyncio.sleep(period)
            if self._held <= 0:
                break
            try:
                await self.pool.execute(_Q["renew_slots"], self.holder,
                                        self.settings.slot_lease_seconds)
            except _DB_ERRORS as exc:
                log.warning("ratelimit.renew_failed", error=str(exc)[:200])

    async def close(self) -> None:
        """Stop renewing and give back every slot this process holds."""
        if self._renewer is not None:
            self._renewer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._renewer
        with contextlib.suppress(*_DB_ERRORS):
            await self.pool.execute(_Q["drop_holder"], self.holder)
