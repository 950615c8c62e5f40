"""Square's declared capabilities, field catalogue, options and default templates."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from daemon.mapping import SOURCE_FIELDS, parse_entity_mapping, validate_mapping
from daemon.provider import Entity, Provider
from plugins.square.provider import SquareOptions, SquareProvider

PROVIDER = SquareProvider()


def test_it_is_a_provider() -> None:
    assert isinstance(PROVIDER, Provider)


def test_batch_sizes_follow_squares_limits() -> None:
    entities = PROVIDER.capabilities.entities
    assert entities[Entity.PRODUCT].batch_size == 5000  # 10,000 objects, 2 per product
    assert entities[Entity.CUSTOMER].batch_size == 100
    assert entities[Entity.TRANSACTION].batch_size == 1


def test_oauth_facts() -> None:
    oauth = PROVIDER.capabilities.oauth
    assert oauth is not None
    assert oauth.token_url == "https://connect.squareup.com/oauth2/token"
    assert oauth.rotates_refresh_token is False
    assert {"ITEMS_WRITE", "CUSTOMERS_WRITE", "ORDERS_WRITE", "PAYMENTS_WRITE"} <= set(
        oauth.scopes)


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


def test_options_forbid_unknown_keys() -> None:
    assert SquareOptions(location_id="L123").location_id == "L123"
    with pytest.raises(ValidationError):
        SquareOptions.model_validate({"locaton_id": "L1"})
