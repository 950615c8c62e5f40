"""The Stripe client (being built)."""

from __future__ import annotations

from daemon.provider import ClientContext, ProviderClient


def StripeClient(ctx: ClientContext) -> ProviderClient:
    raise NotImplementedError("the Stripe client is not built yet")
