"""Retry delays: exponential backoff with full jitter, capped, never below Retry-After."""

from __future__ import annotations

import random

__all__ = ["retry_delay"]


def retry_delay(
    attempt: int,
    *,
    base: float,
    cap: float,
    retry_after: float | None = None,
    rng: random.Random | None = None,
) -> float:
    """Seconds to wait before the next attempt after ``attempt`` attempts (1 = the first).

    Full jitter: uniform in ``[0, min(cap, base * 2 ** (attempt - 1))]``, so that failing
    jobs spread out instead of retrying in step. A provider's ``retry_after`` is a floor,
    honoured even above ``cap``.
    """
    ceiling = min(cap, base * 2.0 ** min(max(attempt - 1, 0), 62))
    delay = (rng or random).uniform(0.0, ceiling)
    if retry_after is not None and retry_after > delay:
        delay = retry_after
    return delay
