"""What every command can reach: settings, plugins, the database. Loaded lazily."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import cached_property

from pydantic import ValidationError

from daemon.db import Database
from daemon.errors import SyncdError
from daemon.migrate import apply_migrations
from daemon.plugins import Plugins, load_plugins
from daemon.settings import Settings

__all__ = ["CliContext"]


class CliContext:
    """Lazily built settings, plugins and database for one command invocation."""

    def __init__(self, settings: Settings | None = None) -> None:
        self._settings = settings

    @cached_property
    def settings(self) -> Settings:
        if self._settings is not None:
            return self._settings
        try:
            return Settings()
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in e['loc']) or 'settings'}: {e['msg']}"
                for e in exc.errors()
            )
            raise SyncdError(f"invalid settings: {problems}") from None

    @cached_property
    def plugins(self) -> Plugins:
        return load_plugins(self.settings.plugins, trace=self.settings.trace_hooks)

    @asynccontextmanager
    async def database(self, *, migrate: bool = False) -> AsyncIterator[Database]:
        """The open database; ``migrate=True`` applies pending migrations first."""
        async with Database(self.settings) as db:
            if migrate:
                async with db.pool.acquire() as conn:
                    await apply_migrations(conn)
            yield db
