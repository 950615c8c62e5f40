"""The Square provider: the entry object syncd loads through the plugin hook."""

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
from plugins.square.capabilities import SQUARE_CAPABILITIES
from plugins.square.templates import square_templates

if TYPE_CHECKING:
    from aiohttp import web

__all__ = ["SquareOptions", "SquareProvider"]


class SquareOptions(BaseModel):
    """The ``options:`` block of a Square integration in venue YAML."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    location_id: str | None = Field(
        default=None, min_length=1, max_length=32, pattern=r"^[A-Za-z0-9_-]+$",
        description="Location that owns pushed orders; default: the seller's first active "
                    "location (GET /v2/locations)")
    payment_source: str = Field(
        default="Ticketing platform", min_length=1, max_length=255,
        description="external_details.source of the EXTERNAL payment recorded for each sale")


class SquareProvider:
    """Square: catalog items, customers and orders paid externally."""

    name = "square"
    capabilities: Capabilities = SQUARE_CAPABILITIES

    def options_model(self) -> type[BaseModel]:
        return SquareOptions

    def default_templates(self) -> Sequence[TemplateSpec]:
        return square_templates()

    def client(self, ctx: ClientContext) -> ProviderClient:
        from plugins.square.client import SquareClient

        return SquareClient(ctx)

    def verify_webhook(self, request: WebhookRequest, secret: str) -> WebhookVerdict:
        from plugins.square.webhooks import verify

        return verify(request, secret)

    def parse_webhook(self, request: WebhookRequest) -> list[InboundChange]:
        from plugins.square.webhooks import parse

        return parse(request)

    def emulator(self, settings: EmulatorSettings) -> web.Application:
        from plugins.square.emulator import SquareEmulator

        return SquareEmulator(settings).app()
