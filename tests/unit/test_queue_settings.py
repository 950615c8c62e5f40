from __future__ import annotations

import pytest
from pydantic import ValidationError

from daemon.settings import Settings
from daemon.worker.config import WorkerConfig


def test_lane_weights_parse_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SYNCD_QUEUE_LANE_WEIGHTS", "16:4:2:1")
    assert Settings(_env_file=None).queue_lane_weights == (16, 4, 2, 1)
    assert WorkerConfig.from_settings(Settings(_env_file=None)).lane_weights == (16, 4, 2, 1)


@pytest.mark.parametrize("value", ["8:4:2", "8:4:2:0", "a:b:c:d", "8:4:2:1:1"])
def test_bad_lane_weights_are_refused(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("SYNCD_QUEUE_LANE_WEIGHTS", value)
    with pytest.raises(ValidationError, match="four whole numbers"):
        Settings(_env_file=None)


def test_heartbeat_must_fit_twice_in_the_lease(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SYNCD_QUEUE_LEASE_SECONDS", "20")
    monkeypatch.setenv("SYNCD_QUEUE_HEARTBEAT_SECONDS", "15")
    with pytest.raises(ValidationError, match="half of queue_lease_seconds"):
        Settings(_env_file=None)
