"""The job handler registry ``syncd worker`` takes its handler from."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from daemon.errors import SyncdError
from daemon.queue import Job, JobContext, JobResult, Outcome, handlers


async def sample_handler(job: Job, ctx: JobContext) -> JobResult:
    return JobResult(Outcome.COMPLETED)


async def other_handler(job: Job, ctx: JobContext) -> JobResult:
    return JobResult(Outcome.FAILED)


@pytest.fixture(autouse=True)
def _clean_registry() -> Iterator[None]:
    handlers.clear()
    yield
    handlers.clear()


def test_no_handler_anywhere_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(handlers, "entry_points", lambda group: [])
    with pytest.raises(handlers.NoHandler, match="no job handler is registered"):
        handlers.load()


def test_registered_handler_wins_and_needs_replace_to_change() -> None:
    handlers.register(sample_handler)
    assert handlers.load() is sample_handler
    with pytest.raises(ValueError, match="already registered"):
        handlers.register(other_handler)
    handlers.register(other_handler, replace=True)
    assert handlers.get() is other_handler


def test_handler_named_on_the_command_line() -> None:
    assert handlers.load(f"{__name__}:sample_handler") is sample_handler
    with pytest.raises(SyncdError, match="expected module:function"):
        handlers.load("nocolon")
    with pytest.raises(SyncdError, match="cannot be loaded"):
        handlers.load(f"{__name__}:missing")
