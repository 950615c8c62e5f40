"""The Square client (being built)."""

from __future__ import annotations

from daemon.provider import ClientContext, ProviderClient


def SquareClient(ctx: ClientContext) -> ProviderClient:
    raise NotImplementedError("the Square client is not built yet")
