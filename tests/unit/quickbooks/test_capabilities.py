"""QuickBooks' declared capabilities, catalogue, options and default templates."""

from __future__ import annotations

from datetime import timedelta

import pytest
from pydantic import ValidationError

from daemon.mapping import parse_entity_mapping, validate_mapping
from daemon.provider import AuthKind, Entity, Provider, TemplateSpec
from daemon.ratelimit import Window, windows_from_extra
from plugins.quickbooks import QuickBooksProvider
from plugins.quickbooks.capabilities import QuickBooksOptions

provider = QuickBooksProvider()


def test_is_a_provider() -> None:
    assert isinstance(provider, Provider)
    assert provider.name == provider.capabilities.provider == "quickbooks"


def test_limits_are_the_documented_ones() -> None:
    caps = provider.capabilities
    assert all(s.batch_size == 30 for s in caps.entities.values())
    assert caps.rate_limit.requests_per_second == 10.0
    assert caps.rate_limit.default_retry_after == 60.0
    windows = windows_from_extra(caps.rate_limit.extra)
    assert Window(500, 60.0, None) in windows
    assert Window(40, 60.0, "batch") in windows


def test_oauth_facts() -> None:
    caps = provider.capabilities
    assert caps.auth is AuthKind.OAUTH
    oauth = caps.oauth
    assert oauth is not None
    assert oauth.token_url == "https://oauth.platform.intuit.com/oauth2/v1/tokens/bearer"
    assert oauth.authorize_url == "https://appcenter.intuit.com/connect/oauth2"
    assert oauth.scopes == ("com.intuit.quickbooks.accounting",)
    assert oauth.rotates_refresh_token is True
    assert oauth.token_auth == "basic"
    assert oauth.callback_params == ("realmId",)
    assert oauth.access_token_ttl == timedelta(seconds=3600)


def test_required_fields() -> None:
    caps = provider.capabilities
    assert caps.entities[Entity.CUSTOMER].required_fields == ("DisplayName",)
    assert caps.entities[Entity.PRODUCT].required_fields == ("Name",)


@pytest.mark.parametrize("template", provider.default_templates(), ids=lambda t: t.name)
def test_default_templates_validate(template: TemplateSpec) -> None:
    for entity_name, raw in template.mappings.items():
        entity = Entity(entity_name)
        problems = validate_mapping(entity, parse_entity_mapping(raw),
                                    provider.capabilities.entities[entity])
        assert problems == [], (template.name, entity_name, problems)


def test_one_default_and_distinct_venue_types() -> None:
    templates = provider.default_templates()
    assert sum(t.is_default for t in templates) == 1
    types = [t.venue_type for t in templates if t.venue_type]
    assert len(types) == len(set(types))


def test_options() -> None:
    opts = QuickBooksOptions()
    assert opts.transaction_kind == "sales_receipt"
    assert opts.minor_version >= 75
    with pytest.raises(ValidationError):
        QuickBooksOptions(minor_version=70)
    with pytest.raises(ValidationError):
        QuickBooksOptions(transaction_kind="refund")  # type: ignore[arg-type]
    with pytest.raises(ValidationError):
        QuickBooksOptions(realm_id="123")  # type: ignore[call-arg]
