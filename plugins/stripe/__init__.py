"""The Stripe provider plugin for syncd."""

from __future__ import annotations

from collections.abc import Sequence

from daemon import hookimpl
from daemon.provider import Provider
from plugins.stripe.provider import StripeProvider

__all__ = ["StripeProvider", "syncd_register_providers"]


@hookimpl
def syncd_register_providers() -> Sequence[Provider]:
    """Register the Stripe provider."""
    return [StripeProvider()]
