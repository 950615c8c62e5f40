"""Stripe's declared capabilities, field catalogue, options and default templates."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from daemon.mapping import SOURCE_FIELDS, parse_entity_mapping, validate_mapping
from daemon.provider import Entity, Provider
from plugins.stripe.provider import StripeOptions, StripeProvider

PROVIDER = StripeProvider()


def test_it_is_a_provider() -> None:
    assert isinstance(PROVIDER, Provider)


def test_no_batch_endpoints() -> None:
    entities = PROVIDER.capabilities.entities
    assert {e.batch_size for e in entities.values()} == {1}
    assert entities[Entity.TRANSACTION].remote_kind == "invoice paid out of band"


def test_rate_limit_is_the_test_mode_figure() -> None:
    assert PROVIDER.capabilities.rate_limit.requests_per_second == 25.0


def test_connect_oauth_facts() -> None:
    oauth = PROVIDER.capabilities.oauth
    assert oauth is not None
    assert oauth.token_url == "https://connect.stripe.com/oauth/token"
    assert oauth.revoke_url == "https://connect.stripe.com/oauth/deauthorize"
    assert oauth.access_token_ttl is None


@pytest.mark.parametrize("template", PROVIDER.default_templates(), ids=lambda t: t.name)
def test_every_default_template_validates(template: object) -> None:
    from daemon.provider import TemplateSpec

    assert isinstance(template, TemplateSpec)
    for entity, support in PROVIDER.capabilities.entities.items():
        mapping = parse_entity_mapping(template.mappings[entity.value])
        assert validate_mapping(entity, mapping, support) == []


def test_one_default_template_and_one_per_venue_type() -> None:
    templates = PROVIDER.default_templates()
    assert [t.venue_type for t in templates if t.is_default] == ["standard"]
    assert {t.venue_type for t in templates} == {
        "standard", "comedy_club", "music_venue", "theater", "festival"}


def test_templates_only_read_known_sources() -> None:
    for template in PROVIDER.default_templates():
        for entity_name, rules in template.mappings.items():
            for rule in parse_entity_mapping(rules).values():
                if rule.source is not None:
                    assert rule.source in SOURCE_FIELDS[Entity(entity_name)]


def test_options_forbid_unknown_keys_and_check_the_account() -> None:
    assert StripeOptions(account="acct_123").account == "acct_123"
    with pytest.raises(ValidationError):
        StripeOptions.model_validate({"acount": "acct_1"})
    with pytest.raises(ValidationError):
        StripeOptions(account="cus_123")
