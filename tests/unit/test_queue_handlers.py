"""Where the workers' job handler comes from: a named one, else the entry point's factory,
given the runtime; nothing is kept in module state."""

from __future__ import annotations

from typing import Any

import pytest

from daemon.errors import SyncdError
from daemon.queue import Job, JobContext, JobResult, Outcome, handlers
from daemon.runtime import Runtime
from daemon.settings import Settings


async def sample_handler(job: Job, ctx: JobContext) -> JobResult:
    return JobResult(Outcome.COMPLETED)


def _runtime() -> Runtime:
    return Runtime(Settings(_env_file=None))


class _EntryPoint:
    name = "default"
    value = "tests:factory"

    def __init__(self, obj: Any) -> None:
        self.obj = obj

    def load(self) -> Any:
        return self.obj


def test_no_handler_anywhere_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(handlers, "entry_points", lambda group: [])
    with pytest.raises(handlers.NoHandler, match="no job handler is registered"):
        handlers.load(None, _runtime())


def test_the_entry_points_factory_is_given_the_runtime(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[Runtime] = []

    def factory(runtime: Runtime) -> Any:
        seen.append(runtime)
        return sample_handler

    monkeypatch.setattr(handlers, "entry_points", lambda group: [_EntryPoint(factory)])
    runtime = _runtime()
    assert handlers.load(None, runtime) is sample_handler
    assert handlers.load(None, runtime) is sample_handler
    assert seen == [runtime, runtime]  # built per call: no handler is kept between runtimes


def test_a_failing_factory_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    def factory(runtime: Runtime) -> Any:
        raise KeyError("nope")

    monkeypatch.setattr(handlers, "entry_points", lambda group: [_EntryPoint(factory)])
    with pytest.raises(SyncdError, match="job handler entry point 'tests:factory' failed"):
        handlers.load(None, _runtime())


def test_handler_named_on_the_command_line() -> None:
    runtime = _runtime()
    assert handlers.load(f"{__name__}:sample_handler", runtime) is sample_handler
    with pytest.raises(SyncdError, match="expected module:function"):
        handlers.load("nocolon", runtime)
    with pytest.raises(SyncdError, match="cannot be loaded"):
        handlers.load(f"{__name__}:missing", runtime)
