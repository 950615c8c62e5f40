"""The event loop every command runs on."""

from __future__ import annotations

import asyncio
import importlib.util

import pytest

from daemon.errors import SyncdError
from daemon.loop import loop_factory, run_async
from daemon.settings import Settings


async def _loop_module() -> str:
    return type(asyncio.get_running_loop()).__module__


def test_asyncio_choice_runs_the_standard_loop() -> None:
    assert run_async(_loop_module(), "asyncio").startswith("asyncio")


def test_auto_takes_uvloop_where_it_is_installed() -> None:
    expected = "uvloop" if importlib.util.find_spec("uvloop") else "asyncio"
    assert run_async(_loop_module(), "auto").startswith(expected)


def test_uvloop_that_is_missing_is_an_operator_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    monkeypatch.setitem(__import__("sys").modules, "uvloop", None)  # import fails
    with pytest.raises(SyncdError, match="uvloop is not installed"):
        loop_factory("uvloop")
    assert loop_factory("auto") is asyncio.new_event_loop


def test_event_loop_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SYNCD_EVENT_LOOP", "asyncio")
    assert Settings().event_loop == "asyncio"
    monkeypatch.setenv("SYNCD_EVENT_LOOP", "tokio")
    with pytest.raises(ValueError, match="event_loop"):
        Settings()
