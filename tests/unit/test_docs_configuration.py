"""Every setting and every YAML key is documented.

Settings: every field of every pydantic-settings model in ``daemon`` and ``plugins`` (found by
walking the modules, so a new model is checked too) must appear as its environment variable in
backticks in docs/configuration.md or docs/config-reference.md.

YAML: every key of every model in the JSON Schema of venue and template files
(``daemon.config.schema``) must appear in backticks in the section of docs/config-reference.md
about that model; every option of the bundled providers in their row of the options table.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from daemon.config.schema import json_schemas
from tests.unit.settings_catalogue import all_env_names, env_names, settings_models

ROOT = Path(__file__).resolve().parents[2]
CONFIGURATION = ROOT / "docs" / "configuration.md"
REFERENCE = ROOT / "docs" / "config-reference.md"

#: Model (JSON Schema title) -> heading of the config-reference section documenting its keys.
SECTIONS = {
    "syncd venue file": "## Venue file",
    "VenueSpec": "### `venue`",
    "IntegrationSpec": "### `integrations[]`",
    "ScheduleSpec": "#### Schedules",
    "MappingSpec": "#### Mapping",
    "FieldRule": "#### Mapping",
    "TransformCall": "#### Mapping",
    "InboundRule": "#### Inbound mappings",
    "syncd template file": "## Template file",
    "ValidationRules": "## Template file",
}
BUNDLED = ("square", "stripe", "mailchimp", "quickbooks")


def section(text: str, heading: str) -> str:
    """The text from ``heading`` to the next heading of the same or a higher level."""
    level = len(heading) - len(heading.lstrip("#"))
    lines = text.splitlines()
    start = lines.index(heading)
    end = len(lines)
    for i in range(start + 1, len(lines)):
        match = re.match(r"^(#+) ", lines[i])
        if match and len(match[1]) <= level and not _in_code(lines, i):
            end = i
            break
    return "\n".join(lines[start:end])


def _in_code(lines: list[str], index: int) -> bool:
    return sum(1 for line in lines[:index] if line.startswith("```")) % 2 == 1


def yaml_keys() -> dict[str, list[str]]:
    """``{model title: its keys}`` for every model in the venue and template schemas."""
    out: dict[str, list[str]] = {}

    def add(title: str, schema: dict[str, Any]) -> None:
        keys = list(schema.get("properties", {}))
        if keys:
            out.setdefault(title, [])
            out[title] += [k for k in keys if k not in out[title]]

    for schema in json_schemas().values():
        add(schema["title"], schema)
        for name, definition in schema.get("$defs", {}).items():
            add(name, definition)
    return out


def test_the_walk_finds_the_settings_models() -> None:
    names = {m.__name__ for m in settings_models()}
    assert {"Settings", "SourceSettings", "SyncSettings"} <= names
    assert "SYNCD_DATABASE_URL" in all_env_names()
    assert "SYNCD_SOURCE_SCHEMA" in all_env_names()


def test_every_setting_is_documented() -> None:
    docs = CONFIGURATION.read_text() + REFERENCE.read_text()
    missing = [f"{model.__name__}.{field} ({var})"
               for model in settings_models()
               for field, var in env_names(model).items() if f"`{var}`" not in docs]
    assert not missing, ("settings missing from docs/configuration.md and "
                         "docs/config-reference.md: " + ", ".join(missing))


def test_every_yaml_key_is_documented_in_its_section() -> None:
    text = REFERENCE.read_text()
    keys = yaml_keys()
    assert {"VenueSpec", "IntegrationSpec", "FieldRule", "syncd template file"} <= set(keys)
    unmapped = sorted(set(keys) - set(SECTIONS))
    assert not unmapped, f"config models with no section named in SECTIONS: {unmapped}"
    missing = [f"{title}.{key} (under '{SECTIONS[title]}')"
               for title, names in keys.items()
               for key in names if f"`{key}`" not in section(text, SECTIONS[title])]
    assert not missing, "YAML keys missing from docs/config-reference.md: " + ", ".join(missing)


def test_every_bundled_provider_option_is_documented() -> None:
    from daemon.plugins import load_plugins

    loaded = load_plugins(list(BUNDLED))
    table = section(REFERENCE.read_text(), "#### Options")
    missing: list[str] = []
    for provider in BUNDLED:
        model = loaded.options_model(provider)
        assert model is not None
        row = next((line for line in table.splitlines()
                    if line.startswith(f"| {provider} |")), "")
        missing += [f"{provider}.{name}" for name in model.model_fields
                    if f"`{name}`" not in row]
    assert not missing, "provider options missing from docs/config-reference.md: " + (
        ", ".join(missing))


def test_the_section_finder_stops_at_the_next_heading() -> None:
    text = "## A\n`x`\n```\n# not a heading\n```\n### B\n`y`\n## C\n`z`\n"
    assert "`y`" in section(text, "## A")
    assert "`z`" not in section(text, "## A")
    assert "`x`" not in section(text, "### B")


def test_every_setting_is_in_the_env_example() -> None:
    text = (ROOT / ".env.example").read_text()
    missing = [var for var in all_env_names()
               if not re.search(rf"^#?\s*{var}=", text, re.M)]
    assert not missing, ".env.example lacks: " + ", ".join(missing)
