"""Pacing calls to stay inside a provider's documented limits.

:class:`Pacer` spaces call starts evenly at a rate (a small burst allowed) and pauses every
caller after a 429's Retry-After. Spacing evenly rather than bursting keeps a provider that
counts requests per window from ever seeing more than its limit.
"""

from __future__ import annotations

import asyncio
import math
import time

from daemon.provider import RateLimit

__all__ = ["Pacer", "push_concurrency", "push_rate"]


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


_ENTITY_WORDS = {"product": ("product", "catalog", "item"),
                 "customer": ("customer", "member", "contact"),
                 "transaction": ("transaction", "order", "sale", "payment", "receipt")}


def push_concurrency(limit: RateLimit, entity: str, rate: float | None = None) -> int:
    """Push calls in flight at once: ``max_concurrency``, narrowed by any ``*_concurrency``
    extra that names the entity (``catalog_write_concurrency`` for products) or none, and by
    the push ``rate``: no more calls in flight than half a second of the rate allows (plus
    one), so a slow provider never has a queue of calls waiting inside its client when a run
    stops."""
    value = max(1, limit.max_concurrency)
    if rate is not None:
        value = min(value, max(1, math.ceil(rate * 0.5) + 1))
    words = _ENTITY_WORDS.get(entity, (entity,))
    for name, cap in limit.extra.items():
        if not name.endswith("concurrency") or cap < 1:
            continue
        scoped = [w for ws in _ENTITY_WORDS.values() for w in ws if w in name]
        if not scoped or any(w in name for w in words):
            value = min(value, int(cap))
    return value


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

    def set_rate(self, rate: float) -> None:
        """Change the spacing from now on (the engine learns how many HTTP calls a push
        makes and slows pushes so that the calls stay inside the request rate)."""
        if rate > 0:
            self.interval = 1.0 / rate

    def pause(self, seconds: float) -> None:
        """No call starts for ``seconds`` (a 429 asked us to wait)."""
        until = time.monotonic() + max(0.0, seconds)
        self._paused_until = max(self._paused_until, until)
        self._next = max(self._next, self._paused_until)
