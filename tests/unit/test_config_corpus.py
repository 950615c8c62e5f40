"""Every kind of config problem is reported exactly as before, by every YAML loader.

The corpus (tests/unit/config_corpus.py) covers syntax errors, YAML syncd refuses, hostile
YAML, wrong types, unknown and missing keys, cron, credentials and their scope, providers,
mappings and templates. Its golden outcomes were recorded with the ruamel-based loader.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from daemon.config import ConfigInvalid, DesiredState, load_config_files, loader
from daemon.config._ruamel import parse_yaml_ruamel
from daemon.config._yaml import Located, YamlError, parse_yaml
from daemon.config.limits import YamlLimits
from daemon.config.testing import SmallPlugin
from daemon.plugins import Plugins, load_plugins
from tests.unit.config_corpus import (
    CASES,
    GOLDEN,
    SCOPE,
    files_for,
    limits_for,
    outcome,
    write_case,
)

GOLDEN_OUTCOMES: dict[str, Any] = json.loads(GOLDEN.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def plugins() -> Plugins:
    return load_plugins([], extra=[("small", SmallPlugin())])


def test_the_golden_file_covers_the_corpus() -> None:
    assert sorted(GOLDEN_OUTCOMES) == sorted(CASES)


@pytest.mark.parametrize("parser", ["libyaml", "ruamel"])
@pytest.mark.parametrize("case", sorted(CASES))
def test_outcome_matches_the_golden_file(case: str, parser: str, tmp_path: Path,
                                         plugins: Plugins,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    if parser == "ruamel":
        monkeypatch.setattr(loader, "parse_yaml", parse_yaml_ruamel)
    root = write_case(tmp_path / "config", case)
    try:
        result: DesiredState | ConfigInvalid = load_config_files(
            files_for(root, case), plugins, limits=limits_for(case), scope=SCOPE)
    except ConfigInvalid as exc:
        result = exc
    assert outcome(result, root) == GOLDEN_OUTCOMES[case]


def _texts() -> list[tuple[str, str]]:
    out = []
    for case, files in sorted(CASES.items()):
        for name, text in sorted(files.items()):
            if isinstance(text, str):
                out.append((f"{case}:{name}", text.removeprefix("\ufeff")))
    return out


def _paths(data: Any, prefix: tuple[str | int, ...] = ()) -> list[tuple[str | int, ...]]:
    out = [prefix]
    if isinstance(data, dict):
        for key, value in data.items():
            out.extend(_paths(value, (*prefix, key)))
    elif isinstance(data, list):
        for i, value in enumerate(data):
            out.extend(_paths(value, (*prefix, i)))
    return out


@pytest.mark.parametrize(("name", "text"), _texts(), ids=[n for n, _ in _texts()])
def test_both_loaders_give_the_same_data_and_positions(name: str, text: str) -> None:
    case = name.split(":", maxsplit=1)[0]
    limits = limits_for(case)
    results = []
    for parse in (parse_yaml, parse_yaml_ruamel):
        try:
            doc = parse(text, limits)
        except YamlError as exc:
            results.append(("error", exc.message, exc.position, exc.hint))
            continue
        probes = [*_paths(doc.data), ("nowhere",), ("venue", "nowhere")]
        results.append(("data", doc.data,
                        [(p, doc.value_position(p), doc.key_position(p),
                          doc.position(p, key=True)) for p in probes]))
    assert results[0] == results[1]


@pytest.mark.parametrize(("name", "text"), [(n, t) for n, t in _texts() if n.startswith(
    ("valid", "many:venues/a", "type_", "unknown_", "scope_", "bad_cron"))])
def test_valid_yaml_is_read_by_libyaml_alone(name: str, text: str,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(text: str, limits: YamlLimits) -> Located:
        raise AssertionError("the ruamel loader was used")

    monkeypatch.setattr("daemon.config._yaml.parse_yaml_ruamel", refuse)
    assert isinstance(parse_yaml(text).data, dict)
