"""The QuickBooks provider: the entry object syncd loads through the plugin hook."""

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
from plugins.quickbooks import webhooks
from plugins.quickbooks.capabilities import CAPABILITIES, QuickBooksOptions
from plugins.quickbooks.templates import TEMPLATES

if TYPE_CHECKING:
    from aiohttp import web

__all__ = ["QuickBooksOptions", "QuickBooksProvider"]


class QuickBooksProvider:
    """QuickBooks Online Accounting: items, customers, sales receipts or invoices."""

    name = "quickbooks"
    capabilities: Capabilities = CAPABILITIES

    def options_model(self) -> type[BaseModel]:
        return QuickBooksOptions

    def default_templates(self) -> Sequence[TemplateSpec]:
        return TEMPLATES

    def client(self, ctx: ClientContext) -> ProviderClient:
        from plugins.quickbooks.client import QuickBooksClient

        return QuickBooksClient(ctx)

    def verify_webhook(self, request: WebhookRequest, secret: str) -> WebhookVerdict:
        return webhooks.verify(request, secret)

    def parse_webhook(self, request: WebhookRequest) -> list[InboundChange]:
        return webhooks.parse(request)

    def emulator(self, settings: EmulatorSettings) -> web.Application:
        from plugins.quickbooks.emulator import QuickBooksEmulator

        return QuickBooksEmulator(settings).app()
