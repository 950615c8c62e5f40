"""Provider limits shared through Postgres: two limiter registries (as two replicas build
them) on one account never exceed its concurrency or rate, and a 429 pause set by one holds
the other."""

from __future__ import annotations

import asyncio
import time

import asyncpg

from daemon.provider import LimitScope, RateLimit
from daemon.ratelimit import LimiterRegistry
from daemon.ratelimit_shared import PostgresLimits, SharedLimitSettings, buckets_for
from plugins.quickbooks.capabilities import CAPABILITIES as QUICKBOOKS


def _replicas(pool: asyncpg.Pool, n: int = 2) -> list[tuple[PostgresLimits, LimiterRegistry]]:
    out = []
    for i in range(n):
        shared = PostgresLimits(pool, holder=f"replica-{i}")
        out.append((shared, LimiterRegistry(shared=shared)))
    return out


async def test_two_replicas_never_hold_more_slots_than_the_account_allows(
        pool: asyncpg.Pool) -> None:
    limit = RateLimit(requests_per_second=1000.0, burst=1000, max_concurrency=3)
    replicas = _replicas(pool)
    in_flight = 0
    peak = 0

    async def request(registry: LimiterRegistry) -> None:
        nonlocal in_flight, peak
        async with registry.get("mailchimp", "us6|acct-1", limit).slot():
            in_flight += 1
            peak = max(peak, in_flight)
            await asyncio.sleep(0.01)
            in_flight -= 1

    # Each replica alone would allow 3 at once: together they must still hold at most 3.
    await asyncio.gather(*(request(reg) for _ in range(15) for _, reg in replicas))
    assert peak == 3
    assert await pool.fetchval("SELECT sum(slots) FROM rate_limit_slots") == 0
    for shared, _ in replicas:
        await shared.close()
    assert await pool.fetchval("SELECT count(*) FROM rate_limit_slots") == 0


async def test_two_replicas_share_one_token_bucket(pool: asyncpg.Pool) -> None:
    limit = RateLimit(requests_per_second=20.0, burst=2, max_concurrency=50)
    replicas = _replicas(pool)
    taken = 0
    start = time.monotonic()

    async def request(registry: LimiterRegistry) -> None:
        nonlocal taken
        await registry.get("stripe", "acct_1", limit).acquire()
        taken += 1

    await asyncio.gather(*(request(reg) for _ in range(6) for _, reg in replicas))
    elapsed = time.monotonic() - start
    # 12 requests: 1 from the burst (a fifth of 2, rounded up), the rest at 20 x margin a
    # second, whichever replica makes them.
    assert taken == 12
    margin = SharedLimitSettings().margin
    assert elapsed >= (12 - 1) / (20.0 * margin) * 0.95
    for shared, _ in replicas:
        await shared.close()


async def test_a_pause_set_by_one_replica_holds_the_other(pool: asyncpg.Pool) -> None:
    limit = RateLimit(requests_per_second=50.0, burst=5, max_concurrency=5)
    (_, reg_one), (two, reg_two) = _replicas(pool)
    first = reg_one.get("quickbooks", "realm-9", limit)
    second = reg_two.get("quickbooks", "realm-9", limit)
    await second.acquire()
    await first.pause(30.0)  # a 429 with Retry-After: 30 seen by replica one
    assert first.paused_until is not None
    assert second.paused_until is None  # replica two has not been told locally...
    account = two.account("quickbooks", "realm-9", limit)
    granted, wait = await account._grant(account.buckets, 1)
    assert granted == 0  # ...but Postgres grants it nothing until the pause ends
    assert 25.0 < wait <= 30.0


def test_window_buckets_never_let_more_than_the_quota_through_a_window() -> None:
    limit = QUICKBOOKS.rate_limit
    buckets = {b.name: b for b in buckets_for(limit, margin=1.0)}
    per_minute = buckets["requests_per_minute"]
    assert per_minute.capacity + per_minute.rate * 60 <= 500
    assert per_minute.capacity + per_minute.rate * 60 >= 0.95 * 500
    batch = buckets["batch_per_minute"]
    assert batch.scope == "batch"
    assert batch.capacity + batch.rate * 60 <= 40


def test_connection_scoped_limits_are_not_shared() -> None:
    limit = RateLimit(requests_per_second=10.0, burst=10, extra={"requests_per_minute": 100},
                      scopes={"requests_per_second": LimitScope.CONNECTION})
    assert [b.name for b in buckets_for(limit)] == ["requests_per_minute"]
