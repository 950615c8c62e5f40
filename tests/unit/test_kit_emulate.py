"""``syncd emulate`` arguments become emulator settings; examples fit the provider."""

from __future__ import annotations

import pytest

from daemon.cli import build_parser
from daemon.commands.emulate import examples, settings_from_args
from daemon.provider import EmulatorSettings


def test_defaults_are_the_emulator_defaults() -> None:
    args = build_parser().parse_args(["emulate", "stripe"])
    assert args.port == 12111
    assert settings_from_args(args) == EmulatorSettings()


def test_every_knob_reaches_the_settings() -> None:
    args = build_parser().parse_args([
        "emulate", "square", "--port", "9000", "--latency", "0.2", "--error-rate", "0.1",
        "--rate-limit-storm", "0.3", "--timeout-rate", "0.05", "--reset-rate", "0.01",
        "--reset-after-commit-rate", "0.02", "--no-rate-limits", "--rate-limit-scale", "0.5",
        "--seed", "7", "--webhook-url", "http://127.0.0.1:8080/webhooks/square",
        "--webhook-secret", "s3", "--access-token-ttl", "60", "--hang-seconds", "4",
        "--storm-retry-after", "30", "--slow-rate", "0.2", "--slow-seconds", "1.5",
        "--malformed-rate", "0.04",
    ])
    assert settings_from_args(args) == EmulatorSettings(
        latency=0.2, error_rate=0.1, rate_limit_storm=0.3, timeout_rate=0.05, reset_rate=0.01,
        reset_after_commit_rate=0.02, enforce_rate_limits=False, rate_limit_scale=0.5, seed=7,
        webhook_url="http://127.0.0.1:8080/webhooks/square", webhook_secret="s3",
        access_token_ttl=60.0, hang_seconds=4.0, storm_retry_after=30.0, slow_rate=0.2,
        slow_seconds=1.5, malformed_rate=0.04,
    )


@pytest.mark.parametrize("argv", [
    ["--error-rate", "-0.1"], ["--reset-rate", "2"], ["--latency", "-1"],
    ["--rate-limit-scale", "0"], ["--port", "http"], ["--malformed-rate", "1.5"],
    ["--slow-seconds", "-2"],
])
def test_bad_values_are_refused(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args(["emulate", "stripe", *argv])
    assert exit_info.value.code == 2
    assert "error:" in capsys.readouterr().err


def test_examples_use_the_credentials_and_account_facts() -> None:
    stripe = examples("stripe", "http://127.0.0.1:1", {"api_key": "sk_test_x"})
    assert "curl http://127.0.0.1:1/v1/customers -u sk_test_x: -d email=ada@example.com " \
        "-d name='Ada Lovelace'" in stripe
    quickbooks = examples("quickbooks", "http://h", {"access_token": "t",
                                                     "account": {"realm_id": "123"}})
    assert any("/v3/company/123/query" in line and "Bearer t" in line for line in quickbooks)
    other = examples("acme", "http://h", {"api_key": "k"})
    assert other == ["curl http://h/_emulator/store", "curl http://h/_emulator/requests",
                     "curl -X PATCH http://h/_emulator/settings -d '{\"error_rate\": 0.2}'"]
