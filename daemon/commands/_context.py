"""What every command can reach: the process's :class:`~daemon.runtime.Runtime`, built once
from the settings, and through it the plugins, the database and the engine."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from functools import cached_property
from typing import TypeVar

from pydantic import ValidationError

from daemon.db import Database
from daemon.errors import SyncdError
from daemon.plugins import Plugins
from daemon.runtime import Runtime
from daemon.settings import Settings

__all__ = ["CliContext", "load_settings"]


_T = TypeVar("_T")


def _validated(factory: Callable[[], _T]) -> _T:
    """``factory()``; one line naming every bad setting instead of a validation error."""
    try:
        return factory()
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'settings'}: {e['msg']}"
            for e in exc.errors()
        )
        raise SyncdError(f"invalid settings: {problems}") from None


def load_settings() -> Settings:
    """The settings from the environment; one line naming every bad one otherwise."""
    return _validated(Settings)


class CliContext:
    """The runtime of one command invocation: built on first use, opened by the command."""

    def __init__(self, settings: Settings | None = None, *,
                 runtime: Runtime | None = None) -> None:
        self._settings = settings
        self._runtime = runtime

    @cached_property
    def runtime(self) -> Runtime:
        """The process's runtime (nothing is opened until a command opens it)."""
        if self._runtime is not None:
            return self._runtime
        settings = self._settings if self._settings is not None else load_settings()
        return _validated(lambda: Runtime(settings))

    @property
    def settings(self) -> Settings:
        return self.runtime.settings

    @property
    def plugins(self) -> Plugins:
        return self.runtime.plugins

    @asynccontextmanager
    async def open(self, *, migrate: bool = False) -> AsyncIterator[Runtime]:
        """The runtime, open for the block (``migrate=True`` applies pending migrations)."""
        async with self.runtime.opened(migrate=migrate) as runtime:
            yield runtime

    @asynccontextmanager
    async def database(self, *, migrate: bool = False) -> AsyncIterator[Database]:
        """The open database; ``migrate=True`` applies pending migrations first."""
        async with self.runtime.opened(migrate=migrate) as runtime:
            yield runtime.database
