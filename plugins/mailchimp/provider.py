"""The Mailchimp provider: the entry object syncd loads through the plugin hook."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from pydantic import BaseModel

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
from plugins.mailchimp import webhooks
from plugins.mailchimp.capabilities import CAPABILITIES, MailchimpOptions
from plugins.mailchimp.templates import TEMPLATES

if TYPE_CHECKING:
    from aiohttp import web

__all__ = ["MailchimpOptions", "MailchimpProvider"]


class MailchimpProvider:
    """Mailchimp Marketing: audience members, and e-commerce store products and orders."""

    name = "mailchimp"
    capabilities: Capabilities = CAPABILITIES

    def options_model(self) -> type[BaseModel]:
        return MailchimpOptions

    def default_templates(self) -> Sequence[TemplateSpec]:
        return TEMPLATES

    def client(self, ctx: ClientContext) -> ProviderClient:
        from plugins.mailchimp.client import MailchimpClient

        return MailchimpClient(ctx)

    def verify_webhook(self, request: WebhookRequest, secret: str) -> WebhookVerdict:
        return webhooks.verify(request, secret)

    def parse_webhook(self, request: WebhookRequest) -> list[InboundChange]:
        return webhooks.parse(request)

    def emulator(self, settings: EmulatorSettings) -> web.Application:
        from plugins.mailchimp.emulator import MailchimpEmulator

        return MailchimpEmulator(settings).app()
