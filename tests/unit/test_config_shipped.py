"""The example config in config/ validates with the bundled plugins and shows every feature."""

from __future__ import annotations

from pathlib import Path

import jsonschema
import pytest

from daemon.config import DesiredState, load_config
from daemon.config._yaml import parse_yaml
from daemon.config.schema import json_schemas
from daemon.plugins import load_plugins

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "config"


@pytest.fixture(scope="module")
def desired() -> DesiredState:
    return load_config(CONFIG, load_plugins(["square", "stripe", "mailchimp", "quickbooks"]))


def test_shipped_config_validates(desired: DesiredState) -> None:
    venues = {d.venue_id for d in desired.integrations}
    assert len(venues) >= 4
    assert {d.provider for d in desired.integrations} == {"square", "stripe", "mailchimp",
                                                          "quickbooks"}


def test_shipped_config_covers_every_feature(desired: DesiredState) -> None:
    items = desired.integrations
    assert {d.venue_type for d in items} >= {"comedy_club", "music_venue", "theater",
                                             "festival", "standard"}
    assert {d.environment for d in items} == {"production", "sandbox"}
    assert any(not d.enabled for d in items)
    assert desired.tombstones
    refs = {v.split(":")[0] for d in items for v in d.credentials.values()}
    assert refs == {"oauth", "env", "file"}
    schedules = [s for d in items for s in d.schedules.values()]
    assert {s["lane"] for s in schedules} == {"CRITICAL", "HIGH", "NORMAL", "LOW"}
    assert {s["direction"] for s in schedules} == {"push", "both"}
    assert {s.get("on_delete") for s in schedules} >= {"delete", "archive"}
    assert any(d.options for d in items)
    origins = {t.name: t.origin for t in desired.templates}
    used = {d.template for d in items}
    assert any(not origins[name].startswith("plugin:") for name in used if name)  # config
    assert any(origins[name].startswith("plugin:") for name in used if name)  # plugin
    overrides = [r for d in items for m in d.field_mappings.values() for r in m.values()]
    assert any(r is None for r in overrides)  # a removed template target
    assert any(r is not None and "transforms" in r for r in overrides)
    assert any(r is not None and "const" in r for r in overrides)


def test_shipped_files_match_the_json_schema() -> None:
    schemas = json_schemas()
    for kind, folder in (("venue", "venues"), ("template", "templates")):
        validator = jsonschema.Draft202012Validator(schemas[kind])
        for path in sorted((CONFIG / folder).glob("*.yaml")):
            errors = list(validator.iter_errors(parse_yaml(path.read_text()).data))
            assert errors == [], (path.name, [e.message for e in errors])
