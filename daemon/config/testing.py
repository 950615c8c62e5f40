"""Small providers for tests of config handling, independent of the bundled catalogues.

Register them with ``load_plugins([], extra=[("testprov", SmallPlugin())])``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict

from daemon import hookimpl
from daemon.provider import (
    AuthKind,
    Capabilities,
    Direction,
    Entity,
    EntitySupport,
    FieldSpec,
    InboundChange,
    Provider,
    RateLimit,
    TemplateSpec,
    WebhookRequest,
    WebhookVerdict,
)

__all__ = ["SmallOptions", "SmallPlugin", "SmallProvider"]


class SmallOptions(BaseModel):
    """Options of the test providers."""

    model_config = ConfigDict(extra="forbid")

    list_id: str | None = None
    batch_limit: int = 50


_PRODUCT = EntitySupport(
    entity=Entity.PRODUCT, directions=frozenset({Direction.PUSH}), remote_kind="item",
    batch_size=100, delete_policies=frozenset({"archive", "leave"}),
    fields=(FieldSpec("title", required=True), FieldSpec("price", "money"),
            FieldSpec("currency", "currency"), FieldSpec("starts", "datetime"),
            FieldSpec("note")))
_CUSTOMER = EntitySupport(
    entity=Entity.CUSTOMER, directions=frozenset({Direction.PUSH, Direction.PULL}),
    remote_kind="contact", batch_size=50,
    fields=(FieldSpec("email", "email", required=True), FieldSpec("first"),
            FieldSpec("last"), FieldSpec("tags", "list"), FieldSpec("source")))


class SmallProvider:
    """A provider with a small catalogue; ``auth`` picks API key or OAuth."""

    def __init__(self, name: str = "testprov", auth: AuthKind = AuthKind.API_KEY,
                 templates: Sequence[TemplateSpec] | None = None) -> None:
        self.name = name
        self.capabilities = Capabilities(
            provider=name, display_name=name.title(),
            entities={Entity.PRODUCT: _PRODUCT, Entity.CUSTOMER: _CUSTOMER},
            rate_limit=RateLimit(requests_per_second=10.0), auth=auth,
            credential_keys=("api_key",) if auth is AuthKind.API_KEY else ())
        self._templates = tuple(templates) if templates is not None else (
            TemplateSpec(name=f"{name}-default", provider=name, is_default=True,
                         mappings={"product": {"title": "event.name", "price": "event.price"},
                                   "customer": {"email": {"from": "customer.email",
                                                          "transforms": ["lowercase"]}}}),)

    def options_model(self) -> type[BaseModel]:
        return SmallOptions

    def default_templates(self) -> Sequence[TemplateSpec]:
        return self._templates

    def client(self, ctx: Any) -> Any:
        raise NotImplementedError

    def verify_webhook(self, request: WebhookRequest, secret: str) -> WebhookVerdict:
        return WebhookVerdict(ok=False, reason="test provider")

    def parse_webhook(self, request: WebhookRequest) -> list[InboundChange]:
        return []

    def emulator(self, settings: Any) -> Any:
        raise NotImplementedError


class SmallPlugin:
    """A plugin registering ``testprov`` (API key) and ``testoauth`` (OAuth)."""

    def __init__(self, *providers: SmallProvider) -> None:
        self.providers = providers or (SmallProvider(), SmallProvider("testoauth",
                                                                    AuthKind.OAUTH))

    @hookimpl
    def syncd_register_providers(self) -> Sequence[Provider]:
        return list(self.providers)
