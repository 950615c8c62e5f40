"""deploy/systemd: the unit verifies, has the keys syncd relies on, and its env file is valid.

With ``systemd-analyze`` on the machine the unit is verified by it (ExecStart pointed at the
syncd being tested, since verify checks that the program exists); without it that test is
skipped. Whatever the machine, the unit is parsed and these keys are asserted:

- [Service] ``Type=notify``, ``NotifyAccess=main``, ``WatchdogSec`` (syncd sends WATCHDOG=1),
  ``ExecStart=... syncd run``, ``ExecReload`` sending SIGHUP, ``EnvironmentFile`` =
  /etc/syncd/syncd.env, ``Restart=on-failure``, ``KillMode=mixed`` and ``TimeoutStopSec`` =
  the default ``SYNCD_WORKER_GRACE_SECONDS`` + 15 s;
- hardening: ``User`` (created by the sysusers file) or ``DynamicUser=yes``,
  ``ProtectSystem=strict``, ``ProtectHome=yes``, ``PrivateTmp=yes``, ``NoNewPrivileges=yes``,
  an empty ``CapabilityBoundingSet=``, ``RestrictAddressFamilies`` within AF_UNIX, AF_INET
  and AF_INET6, ``SystemCallFilter=@system-service``;
- [Install] ``WantedBy=multi-user.target``.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from daemon.settings import Settings
from daemon.source.settings import SourceSettings
from daemon.sync.settings import SyncSettings
from tests.unit.settings_catalogue import all_env_names, env_names, settings_models

ROOT = Path(__file__).resolve().parents[2]
SYSTEMD = ROOT / "deploy" / "systemd"
UNIT = SYSTEMD / "syncd.service"
ENV_EXAMPLE = SYSTEMD / "syncd.env.example"
#: Seconds syncd needs after the grace period: release leases, stop HTTP, close the pools.
SHUTDOWN_MARGIN = 15


def parse_unit(text: str) -> dict[str, list[tuple[str, str]]]:
    """``{section: [(key, value), ...]}``: keys may repeat, as systemd allows."""
    sections: dict[str, list[tuple[str, str]]] = {}
    current: list[tuple[str, str]] | None = None
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], [])
            continue
        key, sep, value = line.partition("=")
        assert sep, f"syncd.service:{number}: not KEY=VALUE: {raw!r}"
        assert current is not None, f"syncd.service:{number}: a setting before any section"
        current.append((key.strip(), value.strip()))
    return sections


def values(unit: dict[str, list[tuple[str, str]]], section: str, key: str) -> list[str]:
    return [v for k, v in unit.get(section, []) if k == key]


def one(unit: dict[str, list[tuple[str, str]]], section: str, key: str) -> str:
    found = values(unit, section, key)
    assert len(found) == 1, f"[{section}] {key}= given {len(found)} times, expected once"
    return found[0]


def seconds(value: str) -> float:
    match = re.fullmatch(r"(\d+(?:\.\d+)?)\s*(s|sec|min|m)?", value)
    assert match, f"not a time span this test reads: {value!r}"
    return float(match[1]) * (60 if match[2] in ("min", "m") else 1)


@pytest.fixture(scope="module")
def unit() -> dict[str, list[tuple[str, str]]]:
    return parse_unit(UNIT.read_text())


def test_notify_service_running_syncd_run(unit: dict[str, list[tuple[str, str]]]) -> None:
    assert one(unit, "Service", "Type") == "notify"
    assert one(unit, "Service", "NotifyAccess") == "main"
    assert seconds(one(unit, "Service", "WatchdogSec")) > 0
    command = one(unit, "Service", "ExecStart").split()
    assert Path(command[0]).name == "syncd"
    assert command[1:] == ["run"]
    assert "-HUP" in one(unit, "Service", "ExecReload").split()
    assert one(unit, "Service", "EnvironmentFile") == "/etc/syncd/syncd.env"
    assert one(unit, "Service", "Restart") == "on-failure"
    assert one(unit, "Install", "WantedBy") == "multi-user.target"
    assert "network-online.target" in one(unit, "Unit", "After").split()


def test_stop_timeout_covers_the_grace_period(unit: dict[str, list[tuple[str, str]]]) -> None:
    grace = Settings(_env_file=None).worker_grace_seconds
    assert one(unit, "Service", "KillMode") == "mixed"
    assert seconds(one(unit, "Service", "TimeoutStopSec")) == grace + SHUTDOWN_MARGIN


def test_hardening(unit: dict[str, list[tuple[str, str]]]) -> None:
    user = values(unit, "Service", "User")
    if user:
        sysusers = (SYSTEMD / "syncd.sysusers.conf").read_text()
        assert re.search(rf"^u\s+{re.escape(user[0])}\s", sysusers, re.M)
    else:
        assert one(unit, "Service", "DynamicUser") == "yes"
    for key, expected in [("ProtectSystem", "strict"), ("ProtectHome", "yes"),
                          ("PrivateTmp", "yes"), ("NoNewPrivileges", "yes"),
                          ("CapabilityBoundingSet", "")]:
        assert one(unit, "Service", key) == expected, key
    families = set(one(unit, "Service", "RestrictAddressFamilies").split())
    assert families
    assert families <= {"AF_UNIX", "AF_INET", "AF_INET6"}
    assert "@system-service" in values(unit, "Service", "SystemCallFilter")


def test_the_unit_parser_refuses_a_line_that_is_not_a_setting() -> None:
    with pytest.raises(AssertionError, match="not KEY=VALUE"):
        parse_unit("[Service]\nType notify\n")


@pytest.mark.skipif(shutil.which("systemd-analyze") is None,
                    reason="systemd-analyze is not installed")
def test_systemd_analyze_verify(tmp_path: Path) -> None:
    syncd = Path(sys.executable).parent / "syncd"
    assert syncd.exists(), "syncd is not installed beside the test interpreter"
    text = UNIT.read_text()
    command = one(parse_unit(text), "Service", "ExecStart").split()[0]
    copy = tmp_path / "syncd.service"
    copy.write_text(text.replace(command, str(syncd)))
    result = subprocess.run(["systemd-analyze", "verify", "--man=no", "--generators=no",
                             str(copy)], capture_output=True, text=True, timeout=60,
                            env={**os.environ, "SYSTEMD_LOG_COLOR": "0"}, check=False)
    # verify only warns (exit 0) about unknown keys and bad values: any remark is a failure.
    remarks = [line for line in (result.stdout + result.stderr).splitlines()
               if "syncd.service" in line]
    assert result.returncode == 0, result.stdout + result.stderr
    assert not remarks, result.stdout + result.stderr


def env_file(text: str) -> dict[str, str]:
    """Every ``KEY=VALUE`` of an EnvironmentFile, commented-out examples included."""
    out: dict[str, str] = {}
    for raw in text.splitlines():
        match = re.match(r"^#?\s*([A-Z][A-Z0-9_]*)=(.*)$", raw)
        if match:
            value = match[2].strip()
            if len(value) >= 2 and value[0] == value[-1] == "'":
                value = value[1:-1]
            out[match[1]] = value
    return out


def test_the_env_example_lists_every_setting() -> None:
    listed = env_file(ENV_EXAMPLE.read_text())
    missing = [name for name in all_env_names() if name not in listed]
    assert not missing, "deploy/systemd/syncd.env.example lacks: " + ", ".join(missing)


def test_the_env_example_values_are_valid_and_hold_no_secret(
        monkeypatch: pytest.MonkeyPatch) -> None:
    listed = env_file(ENV_EXAMPLE.read_text())
    for name, value in listed.items():
        if value:
            monkeypatch.setenv(name, value)
    settings = Settings(_env_file=None)
    SourceSettings()
    SyncSettings()
    assert settings.database_url is not None
    assert "CHANGE-ME" in settings.database_url.get_secret_value()
    secret = secret_env_names()
    assert "SYNCD_WEBHOOK_SECRETS" in secret
    real = [n for n, v in listed.items()
            if (n in secret or n.startswith("VENUE_")) and v and "CHANGE-ME" not in v]
    assert not real, f"example secrets must be placeholders (CHANGE-ME): {real}"


def secret_env_names() -> set[str]:
    """The variables of settings typed as secrets (SecretStr, or a map of them)."""
    return {var for model in settings_models() for field, var in env_names(model).items()
            if "SecretStr" in str(model.model_fields[field].annotation)}
