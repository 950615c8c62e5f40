"""Named asyncio locks per provider account, owned by the runtime and handed to clients.

A client that must not run two of some operation on one account at once (Square's catalog
writes: a second batch upsert while one is in flight is refused with a version conflict)
takes ``locks.get(provider, account, name)``. Every client of the account in this process
gets the same lock; across replicas, one integration runs on one replica at a time.
"""

from __future__ import annotations

import asyncio

__all__ = ["AccountLocks"]


class AccountLocks:
    """One :class:`asyncio.Lock` per (provider, account, name), made on first use."""

    def __init__(self) -> None:
        self._locks: dict[tuple[str, str, str], asyncio.Lock] = {}

    def get(self, provider: str, account: str, name: str) -> asyncio.Lock:
        key = (provider, account, name)
        lock = self._locks.get(key)
        if lock is None:
            lock = self._locks[key] = asyncio.Lock()
        return lock

    def __len__(self) -> int:
        return len(self._locks)
