"""Pacing calls to stay inside a provider's documented limits.

:class:`Pacer` spaces call starts evenly at a rate (a small burst allowed) and pauses every
caller after a 429's Retry-After. Spacing evenly rather than bursting keeps a provider that
counts requests per window from ever seeing more than its limit.
"""

from __future__ import annotations

import asyncio
import time

from daemon.provider import RateLimit

__all__ = ["Pacer", "push_rate"]


def push_rate(limit: RateLimit, batch_size: int) -> float:
    """Push calls per second a provider allows: its request rate, and any narrower limit
    among ``extra`` given per second or per minute (batch limits apply to batch calls)."""
    rate = limit.requests_per_second
    for name, value in limit.extra.items():
        if value <= 0:
            continue
        if "batch" in name and batch_size <= 1:
            continue
        if name.endswith(("per_minute", "_per_min")):
            rate = min(rate, value / 60.0)
        elif name.endswith(("per_second", "_per_sec")):
            rate = min(rate, value)
    return rate


class Pacer:
    """Spaces acquisitions ``1/rate`` seconds apart, after at most ``burst`` immediate ones."""

    def __init__(self, rate: float, burst: int = 1) -> None:
        if rate <= 0:
            raise ValueError("rate must be positive")
        self.interval = 1.0 / rate
        self.burst = max(1, burst)
        self._next = time.monotonic() - self.interval * (self.burst - 1)
        self._paused_until = 0.0
        self._lock = asyncio.Lock()

    async def acquire(self) -> None:
        async with self._lock:
            now = time.monotonic()
            start = max(self._next, now, self._paused_until)
            self._next = start + self.interval
        delay = start - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)

    def pause(self, seconds: float) -> None:
        """No call starts for ``seconds`` (a 429 asked us to wait)."""
        until = time.monotonic() + max(0.0, seconds)
        self._paused_until = max(self._paused_until, until)
        self._next = max(self._next, self._paused_until)
