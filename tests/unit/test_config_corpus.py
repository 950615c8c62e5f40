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

from daemon.config import ConfigInvalid, DesiredState, load_config_files
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


@pytest.mark.parametrize("case", sorted(CASES))
def test_outcome_matches_the_golden_file(case: str, tmp_path: Path, plugins: Plugins) -> None:
    root = write_case(tmp_path / "config", case)
    try:
        result: DesiredState | ConfigInvalid = load_config_files(
            files_for(root, case), plugins, limits=limits_for(case), scope=SCOPE)
    except ConfigInvalid as exc:
        result = exc
    assert outcome(result, root) == GOLDEN_OUTCOMES[case]
