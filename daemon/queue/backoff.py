"""Retry delays of jobs: exponential backoff with full jitter, capped, never below
Retry-After. The formula lives with the retry policy (:mod:`daemon.retry`)."""

from __future__ import annotations

from daemon.retry import retry_delay

__all__ = ["retry_delay"]
