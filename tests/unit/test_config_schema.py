from __future__ import annotations

from typing import Any

import jsonschema
import pytest

from daemon.config.schema import json_schemas

VENUE: dict[str, Any] = {
    "venue": {"id": "6f1c2a9e-0b7d-4c1e-9a55-3f2d8b7c1a01", "name": "Laugh"},
    "integrations": [{
        "provider": "square", "credentials": "oauth",
        "schedules": {"product": {"cron": "0 * * * *", "lane": "HIGH"}},
        "mapping": {"template": "comedy", "overrides": {
            "product": {"name": "event.name", "description": None,
                        "note": {"const": "x", "transforms": ["uppercase"]}}}},
    }],
}


def test_schemas_are_valid_json_schema() -> None:
    for schema in json_schemas().values():
        jsonschema.Draft202012Validator.check_schema(schema)


def test_venue_schema_accepts_short_forms_and_rejects_unknown_keys() -> None:
    validator = jsonschema.Draft202012Validator(json_schemas()["venue"])
    assert list(validator.iter_errors(VENUE)) == []
    bad = {**VENUE, "colour": "red"}
    assert list(validator.iter_errors(bad))


@pytest.mark.parametrize("value", ["oauth", {"api_key": "env:KEY", "webhook_secret": "file:/s"}])
def test_credentials_forms(value: Any) -> None:
    validator = jsonschema.Draft202012Validator(json_schemas()["venue"])
    doc = {**VENUE, "integrations": [{"provider": "x", "credentials": value}]}
    assert list(validator.iter_errors(doc)) == []


def test_template_schema() -> None:
    validator = jsonschema.Draft202012Validator(json_schemas()["template"])
    doc = {"name": "comedy", "provider": "square", "mappings": {"product": {"name": "event.name"}}}
    assert list(validator.iter_errors(doc)) == []
    assert list(validator.iter_errors({**doc, "default": "yes"}))
