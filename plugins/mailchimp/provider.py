"""The Mailchimp provider: capabilities and client.

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


class MailchimpOptions(BaseModel):
    """Options of a Mailchimp integration in venue YAML."""

    model_config = ConfigDict(extra="forbid")


class MailchimpProvider:
    """Mailchimp."""

    name = "mailchimp"
    capabilities = Capabilities(
        provider="mailchimp",
        display_name="Mailchimp",
        entities={
        Entity.CUSTOMER: EntitySupport(
            entity=Entity.CUSTOMER,
            directions=frozenset({Direction.PUSH}),
            remote_kind="customer",
            batch_size=500,
            fields=(FieldSpec("name", required=True),),
        ),
        Entity.PRODUCT: EntitySupport(
            entity=Entity.PRODUCT,
            directions=frozenset({Direction.PUSH}),
            remote_kind="product",
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
        rate_limit=RateLimit(requests_per_second=10.0, burst=10, max_concurrency=10),
        auth=AuthKind.API_KEY,
        base_url="https://api.mailchimp.com/3.0",
    )

    def options_model(self) -> type[BaseModel]:
        return MailchimpOptions

    def default_templates(self) -> Sequence[TemplateSpec]:
        return ()

    def client(self, ctx: ClientContext) -> ProviderClient:
        raise NotImplementedError("the Mailchimp client is not built yet")

    def verify_webhook(self, request: WebhookRequest, secret: str) -> WebhookVerdict:
        return WebhookVerdict(ok=False, reason="webhook verification is not built yet")

    def parse_webhook(self, request: WebhookRequest) -> list[InboundChange]:
        return []

    def emulator(self, settings: EmulatorSettings) -> web.Application:
        raise NotImplementedError("the Mailchimp emulator is not built yet")
