"""The per-account rate limiter, driven by a manual clock (no real sleeping)."""

from __future__ import annotations

import asyncio

import pytest

from daemon.provider import RateLimit
from daemon.ratelimit import LimiterRegistry, ManualClock, RateLimiter, Window, windows_from_extra


def _spawn(limiter: RateLimiter, n: int, scopes: tuple[str, ...] = ()) -> list[asyncio.Task[None]]:
    return [asyncio.create_task(limiter.acquire(scopes)) for _ in range(n)]


def _done(tasks: list[asyncio.Task[None]]) -> int:
    return sum(t.done() for t in tasks)


async def test_burst_then_steady_rate() -> None:
    clock = ManualClock()
    limiter = RateLimiter(rate=2.0, burst=3, max_concurrency=100, clock=clock)
    tasks = _spawn(limiter, 6)
    await clock.settle()
    assert _done(tasks) == 3  # the burst goes at once
    await clock.advance(0.49)
    assert _done(tasks) == 3
    await clock.advance(0.01)
    assert _done(tasks) == 4  # one token every 0.5 s
    await clock.advance(1.0)
    assert _done(tasks) == 6


async def test_concurrency_cap_holds_until_release() -> None:
    clock = ManualClock()
    limiter = RateLimiter(rate=1000.0, burst=1000, max_concurrency=2, clock=clock)
    release = asyncio.Event()
    entered: list[int] = []

    async def work(i: int) -> None:
        async with limiter.slot():
            entered.append(i)
            await release.wait()

    tasks = [asyncio.create_task(work(i)) for i in range(5)]
    await clock.settle()
    assert len(entered) == 2
    assert limiter.in_flight == 2
    release.set()
    await asyncio.gather(*tasks)
    assert sorted(entered) == [0, 1, 2, 3, 4]
    assert limiter.in_flight == 0


async def test_cancelled_waiter_does_not_leak_a_slot() -> None:
    clock = ManualClock()
    limiter = RateLimiter(rate=1000.0, burst=1000, max_concurrency=1, clock=clock)
    hold = asyncio.Event()

    async def holder() -> None:
        async with limiter.slot():
            await hold.wait()

    h = asyncio.create_task(holder())
    await clock.settle()
    waiter = asyncio.create_task(limiter.acquire())
    await clock.settle()
    waiter.cancel()
    await clock.settle()
    hold.set()
    await h
    assert limiter.in_flight == 0
    await asyncio.wait_for(limiter.acquire(), 1)


async def test_sliding_window_limits_calls_per_period() -> None:
    clock = ManualClock()
    limiter = RateLimiter(rate=100.0, burst=100, max_concurrency=100,
                          windows=[Window(limit=3, period=60.0)], clock=clock)
    tasks = _spawn(limiter, 5)
    await clock.settle()
    assert _done(tasks) == 3
    await clock.advance(59.9)
    assert _done(tasks) == 3
    await clock.advance(0.1)
    assert _done(tasks) == 5


async def test_scoped_window_applies_only_to_its_scope() -> None:
    clock = ManualClock()
    limiter = RateLimiter(rate=100.0, burst=100, max_concurrency=100,
                          windows=[Window(limit=2, period=60.0, scope="batch")], clock=clock)
    batch = _spawn(limiter, 3, ("batch",))
    plain = _spawn(limiter, 3)
    await clock.settle()
    assert _done(batch) == 2
    assert _done(plain) == 3
    await clock.advance(60.0)
    assert _done(batch) == 3


async def test_pause_holds_every_request_of_the_account() -> None:
    clock = ManualClock()
    limiter = RateLimiter(rate=100.0, burst=100, max_concurrency=100, clock=clock)
    limiter.pause_for(60.0)
    assert limiter.paused_until == 60.0
    tasks = _spawn(limiter, 4)
    await clock.advance(59.0)
    assert _done(tasks) == 0
    await clock.advance(1.0)
    assert _done(tasks) == 4
    assert limiter.paused_until is None


async def test_pause_only_extends() -> None:
    clock = ManualClock()
    limiter = RateLimiter(rate=1.0, clock=clock)
    limiter.pause_for(30.0)
    limiter.pause_for(5.0)
    assert limiter.paused_until == 30.0


def test_windows_from_extra_reads_scope_and_unit() -> None:
    windows = windows_from_extra(
        {"requests_per_minute": 500, "batch_per_minute": 40, "note": 3, "x_per_fortnight": 1}
    )
    assert Window(500, 60.0, None) in windows
    assert Window(40, 60.0, "batch") in windows
    assert len(windows) == 2


def test_from_rate_limit_scales_rates_and_windows() -> None:
    rl = RateLimit(requests_per_second=10.0, burst=10, max_concurrency=4,
                   extra={"requests_per_minute": 500})
    limiter = RateLimiter.from_rate_limit(rl, scale=0.1)
    assert limiter.rate == pytest.approx(1.0)
    assert limiter.burst == 1
    assert limiter.max_concurrency == 4


def test_invalid_limits_are_refused() -> None:
    with pytest.raises(ValueError, match="rate"):
        RateLimiter(rate=0.0)
    with pytest.raises(ValueError, match="window"):
        Window(limit=0, period=1.0)


def test_registry_shares_one_limiter_per_account() -> None:
    reg = LimiterRegistry()
    rl = RateLimit(requests_per_second=1.0)
    a = reg.get("quickbooks", "realm-1", rl)
    assert reg.get("quickbooks", "realm-1", rl) is a
    assert reg.get("quickbooks", "realm-2", rl) is not a
    assert len(reg) == 2
