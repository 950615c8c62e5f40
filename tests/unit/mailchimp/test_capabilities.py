"""Mailchimp's declared capabilities, catalogue, options and default templates."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from daemon.mapping import parse_entity_mapping, validate_mapping
from daemon.provider import AuthKind, Direction, Entity, Provider
from plugins.mailchimp import MailchimpProvider
from plugins.mailchimp.capabilities import MailchimpOptions

provider = MailchimpProvider()


def test_is_a_provider() -> None:
    assert isinstance(provider, Provider)
    assert provider.name == provider.capabilities.provider == "mailchimp"


def test_batch_sizes_and_limits_are_the_documented_ones() -> None:
    caps = provider.capabilities
    assert caps.entities[Entity.CUSTOMER].batch_size == 500
    assert caps.rate_limit.max_concurrency == 10
    assert caps.auth is AuthKind.API_KEY
    assert caps.credential_keys == ("api_key",)
    assert caps.oauth is not None
    assert caps.oauth.rotates_refresh_token is False
    assert caps.oauth.access_token_ttl is None
    assert caps.supports(Entity.CUSTOMER, Direction.PULL)
    assert not caps.supports(Entity.PRODUCT, Direction.PULL)
    assert any("idempotency" in u for u in caps.unsupported)


def test_required_fields() -> None:
    caps = provider.capabilities
    assert caps.entities[Entity.CUSTOMER].required_fields == ("email_address",)
    assert set(caps.entities[Entity.TRANSACTION].required_fields) >= {
        "currency_code", "order_total", "customer.email_address"}


@pytest.mark.parametrize("template", provider.default_templates(), ids=lambda t: t.name)
def test_default_templates_validate(template: object) -> None:
    from daemon.provider import TemplateSpec

    assert isinstance(template, TemplateSpec)
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


def test_options_forbid_unknown_keys_and_need_a_list() -> None:
    assert MailchimpOptions(list_id="abc123").double_opt_in is False
    with pytest.raises(ValidationError):
        MailchimpOptions(list_id="abc", colour="blue")  # type: ignore[call-arg]
    with pytest.raises(ValidationError):
        MailchimpOptions()  # type: ignore[call-arg]
