from __future__ import annotations

import re
from pathlib import Path

import pytest

from daemon.settings import Settings

ROOT = Path(__file__).resolve().parents[2]


def test_database_url_alias_and_prefix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql://a@h/one")
    assert Settings(_env_file=None).database_url.get_secret_value() == "postgresql://a@h/one"
    monkeypatch.setenv("SYNCD_DATABASE_URL", "postgresql://a@h/two")
    assert Settings(_env_file=None).database_url.get_secret_value() == "postgresql://a@h/two"


def test_defaults_need_no_environment() -> None:
    s = Settings(_env_file=None)
    assert s.database_url is None
    assert s.plugins is None
    assert s.config_dir == Path("config")


def test_plugins_allow_list_accepts_commas_or_json(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SYNCD_PLUGINS", "square, stripe")
    assert Settings(_env_file=None).plugins == ["square", "stripe"]
    monkeypatch.setenv("SYNCD_PLUGINS", '["mailchimp"]')
    assert Settings(_env_file=None).plugins == ["mailchimp"]


def test_secret_url_is_not_in_repr(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SYNCD_DATABASE_URL", "postgresql://u:hunter2@h/d")
    assert "hunter2" not in repr(Settings(_env_file=None))


def test_every_setting_is_documented() -> None:
    env_example = (ROOT / ".env.example").read_text()
    docs = (ROOT / "docs" / "configuration.md").read_text()
    for name in Settings.model_fields:
        var = f"SYNCD_{name.upper()}"
        assert re.search(rf"^#?\s*{var}=", env_example, re.M), f"{var} missing in .env.example"
        assert f"`{var}`" in docs, f"{var} missing in docs/configuration.md"
