"""The QuickBooks client (being built)."""

from __future__ import annotations

from typing import Any

from daemon.provider import ClientContext


class QuickBooksClient:
    def __init__(self, ctx: ClientContext) -> None:
        raise NotImplementedError("the QuickBooks client is not built yet")

    def __getattr__(self, name: str) -> Any:
        raise AttributeError(name)
