"""The Stripe provider: capabilities and client.

Skeleton: capabilities are declared; the client, webhooks and emulator are built by the
provider work that follows.
"""

from __future__ import annotations

from collections.abc import Sequence

from aiohttp import web
from pydantic import BaseModel, ConfigDict

from daemon.provider import (
    AuthKind,
    Capabilities,
    ClientContext,
    Direction,
    EmulatorSettings,
    Entity,
    EntitySupport,
    FieldSpec,
    InboundChange,
    ProviderClient,
    RateLimit,
    TemplateSpec,
    WebhookRequest,
    WebhookVerdict,
)


class StripeOptions(BaseModel):
    """Options of a Stripe integration in venue YAML."""

    model_config = ConfigDict(extra="forbid")


class StripeProvider:
    """Stripe."""

    name = "stripe"
    capabilities = Capabilities(
        provider="stripe",
        display_name="Stripe",
        entities={
        Entity.PRODUCT: EntitySupport(
            entity=Entity.PRODUCT,
            directions=frozenset({Direction.PUSH}),
            remote_kind="product",
            batch_size=1,
            fields=(FieldSpec("name", required=True),),
        ),
        Entity.CUSTOMER: EntitySupport(
            entity=Entity.CUSTOMER,
            directions=frozenset({Direction.PUSH}),
            remote_kind="customer",
            batch_size=1,
            fields=(FieldSpec("name", required=True),),
        ),
        Entity.TRANSACTION: EntitySupport(
            entity=Entity.TRANSACTION,
            directions=frozenset({Direction.PUSH}),
            remote_kind="transaction",
            batch_size=1,
            fields=(FieldSpec("name", required=True),),
        ),
        },
        rate_limit=RateLimit(requests_per_second=25.0, burst=25, max_concurrency=8),
        auth=AuthKind.API_KEY,
        base_url="https://api.stripe.com",
    )

    def options_model(self) -> type[BaseModel]:
        return StripeOptions

    def default_templates(self) -> Sequence[TemplateSpec]:
        return ()

    def client(self, ctx: ClientContext) -> ProviderClient:
        raise NotImplementedError("the Stripe client is not built yet")

    def verify_webhook(self, request: WebhookRequest, secret: str) -> WebhookVerdict:
        return WebhookVerdict(ok=False, reason="webhook verification is not built yet")

    def parse_webhook(self, request: WebhookRequest) -> list[InboundChange]:
        return []

    def emulator(self, settings: EmulatorSettings) -> web.Application:
        raise NotImplementedError("the Stripe emulator is not built yet")
