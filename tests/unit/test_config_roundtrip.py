"""Property tests: YAML written from the models reads back to the same models."""

from __future__ import annotations

import io
import uuid
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from ruamel.yaml import YAML

from daemon.config._yaml import parse_yaml
from daemon.config.models import LANES, VENUE_TYPES, TemplateFile, VenueFile
from daemon.mapping import SOURCE_FIELDS, TRANSFORMS
from daemon.provider import Entity

names = st.text(st.characters(codec="utf-8", categories=("L", "N", "Zs", "P")),
                min_size=1, max_size=40).filter(lambda s: s.strip() == s and s)
crons = st.sampled_from(["*/15 * * * *", "0 * * * *", "30 2 * * 1-5", "0 0 1 * *",
                         "5,35 */2 * * *"])
refs = st.one_of(st.from_regex(r"env:[A-Z_][A-Z0-9_]{0,20}", fullmatch=True),
                 st.from_regex(r"file:/run/secrets/[a-z]{1,10}", fullmatch=True))
targets = st.from_regex(r"[a-z][a-z_]{0,10}(\.[a-z_]{1,8}){0,2}", fullmatch=True)
simple_transforms = sorted(n for n, t in TRANSFORMS.items() if not t.params)


@st.composite
def rules(draw: st.DrawFn, entity: Entity) -> Any:
    source = draw(st.sampled_from(sorted(SOURCE_FIELDS[entity])))
    kind = draw(st.integers(0, 3))
    if kind == 0:
        return source
    if kind == 1:
        return {"const": draw(st.one_of(st.integers(-10**6, 10**6), names, st.booleans()))}
    rule: dict[str, Any] = {"from": source}
    rule["transforms"] = draw(st.lists(st.sampled_from(simple_transforms), max_size=3))
    if kind == 3:
        rule["transforms"].append({"name": "truncate", "length": draw(st.integers(1, 99))})
        rule["default"] = draw(names)
    return rule


@st.composite
def integrations(draw: st.DrawFn) -> dict[str, Any]:
    out: dict[str, Any] = {"provider": draw(st.from_regex(r"[a-z]{3,12}", fullmatch=True))}
    if draw(st.booleans()):
        out["enabled"] = draw(st.booleans())
    if draw(st.booleans()):
        out["environment"] = draw(st.sampled_from(["production", "sandbox"]))
    out["credentials"] = draw(st.one_of(
        st.just("oauth"), st.dictionaries(st.sampled_from(["api_key", "webhook_secret"]),
                                          refs, max_size=2)))
    entities = draw(st.lists(st.sampled_from(list(Entity)), unique=True, max_size=3))
    out["schedules"] = {e.value: {"cron": draw(crons), "lane": draw(st.sampled_from(LANES)),
                                  "direction": draw(st.sampled_from(["push", "pull", "both"])),
                                  **draw(st.sampled_from([{}, {"on_delete": "archive"},
                                                          {"on_delete": "leave"}]))}
                        for e in entities}
    mapping: dict[str, Any] = {}
    if draw(st.booleans()):
        mapping["template"] = draw(st.from_regex(r"[a-z][a-z0-9-]{0,15}", fullmatch=True))
    mapping["overrides"] = {
        e.value: draw(st.dictionaries(targets, st.one_of(st.none(), rules(e)), max_size=3))
        for e in entities}
    out["mapping"] = mapping
    out["options"] = draw(st.dictionaries(st.from_regex(r"[a-z_]{1,10}", fullmatch=True),
                                          st.one_of(st.integers(), names, st.booleans()),
                                          max_size=3))
    if draw(st.integers(0, 9)) == 0:
        out["removed"] = True
    return out


@st.composite
def venue_files(draw: st.DrawFn) -> dict[str, Any]:
    venue: dict[str, Any] = {"id": str(draw(st.uuids())), "name": draw(names)}
    if draw(st.booleans()):
        venue["type"] = draw(st.sampled_from(VENUE_TYPES))
    venue["timezone"] = draw(st.sampled_from(["UTC", "Europe/London", "America/Chicago",
                                              "Australia/Sydney"]))
    return {"venue": venue, "integrations": draw(st.lists(integrations(), max_size=4))}


def dump(data: Any) -> str:
    buf = io.StringIO()
    yaml = YAML(typ="safe", pure=True)
    yaml.default_flow_style = False
    yaml.dump(data, buf)
    return buf.getvalue()


def to_yaml_data(model: VenueFile | TemplateFile) -> Any:
    return model.model_dump(mode="json", by_alias=True, exclude_none=True)


@settings(max_examples=150, deadline=None)
@given(venue_files())
def test_venue_yaml_round_trips_through_the_model(raw: dict[str, Any]) -> None:
    model = VenueFile.model_validate(parse_yaml(dump(raw)).data)
    again = VenueFile.model_validate(parse_yaml(dump(to_yaml_data(model))).data)
    assert again == model
    assert model.venue.id == uuid.UUID(raw["venue"]["id"])
    assert len(model.integrations) == len(raw["integrations"])


@st.composite
def template_files(draw: st.DrawFn) -> dict[str, Any]:
    entities = draw(st.lists(st.sampled_from(list(Entity)), unique=True, min_size=1))
    out: dict[str, Any] = {
        "name": draw(st.from_regex(r"[a-z][a-z0-9_.-]{0,20}", fullmatch=True)),
        "provider": draw(st.from_regex(r"[a-z]{3,12}", fullmatch=True)),
        "mappings": {e.value: draw(st.dictionaries(targets, rules(e), min_size=1, max_size=4))
                     for e in entities},
        "default": draw(st.booleans()),
        "description": draw(names),
    }
    if draw(st.booleans()):
        out["venue_type"] = draw(st.sampled_from(VENUE_TYPES))
    if draw(st.booleans()):
        out["validation_rules"] = {entities[0].value: {"required": draw(st.lists(targets,
                                                                                 max_size=3))}}
    return out


@settings(max_examples=100, deadline=None)
@given(template_files())
def test_template_yaml_round_trips_through_the_model(raw: dict[str, Any]) -> None:
    model = TemplateFile.model_validate(parse_yaml(dump(raw)).data)
    again = TemplateFile.model_validate(parse_yaml(dump(to_yaml_data(model))).data)
    assert again == model
