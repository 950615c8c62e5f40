"""The Stripe provider: the entry object syncd loads through the plugin hook."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict, Field

from daemon.provider import (
    Capabilities,
    ClientContext,
    EmulatorSettings,
    InboundChange,
    ProviderClient,
    TemplateSpec,
    WebhookRequest,
    WebhookVerdict,
)
from plugins.stripe.capabilities import STRIPE_CAPABILITIES
from plugins.stripe.templates import stripe_templates

if TYPE_CHECKING:
    from aiohttp import web

__all__ = ["StripeOptions", "StripeProvider"]


class StripeOptions(BaseModel):
    """The ``options:`` block of a Stripe integration in venue YAML."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    account: str | None = Field(
        default=None, pattern=r"^acct_[A-Za-z0-9]+$",
        description="Connect: act for this connected account (sent as Stripe-Account)")
    currency: str | None = Field(
        default=None, pattern=r"^[a-z]{3}$",
        description="Currency for prices when a mapped record carries none (ISO 4217, lower)")
    api_version: str | None = Field(
        default=None, min_length=1, max_length=40,
        description="Stripe-Version to pin; default: the account's version")


class StripeProvider:
    """Stripe: products with prices, and customers."""

    name = "stripe"
    capabilities: Capabilities = STRIPE_CAPABILITIES

    def options_model(self) -> type[BaseModel]:
        return StripeOptions

    def default_templates(self) -> Sequence[TemplateSpec]:
        return stripe_templates()

    def client(self, ctx: ClientContext) -> ProviderClient:
        from plugins.stripe.client import StripeClient

        return StripeClient(ctx)

    def verify_webhook(self, request: WebhookRequest, secret: str) -> WebhookVerdict:
        from plugins.stripe.webhooks import verify

        return verify(request, secret)

    def parse_webhook(self, request: WebhookRequest) -> list[InboundChange]:
        from plugins.stripe.webhooks import parse

        return parse(request)

    def emulator(self, settings: EmulatorSettings) -> web.Application:
        from plugins.stripe.emulator import StripeEmulator

        return StripeEmulator(settings).app()
