"""A :class:`~daemon.runtime.Runtime` for tests: on a pool the test already has, with the
providers the test names, so a test gets its engine, handler and limiters the way the
daemon does instead of building them itself."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import asyncpg
import httpx
import pluggy

from daemon import PROJECT, hookspecs
from daemon.credentials import TokenSource
from daemon.plugins import Plugins
from daemon.provider import Provider
from daemon.ratelimit import LimiterRegistry
from daemon.runtime import Runtime
from daemon.settings import Settings
from daemon.sync.settings import SyncSettings

__all__ = ["plugins_with", "runtime_for"]


def plugins_with(providers: Mapping[str, Provider]) -> Plugins:
    """Loaded plugins holding exactly ``providers`` (no entry point is read)."""
    pm = pluggy.PluginManager(PROJECT)
    pm.add_hookspecs(hookspecs)
    return Plugins(pm, providers=dict(providers))


def runtime_for(pool: asyncpg.Pool, providers: Mapping[str, Provider] | Plugins, *,
                sync: SyncSettings | None = None, tokens: TokenSource | None = None,
                http: httpx.AsyncClient | None = None,
                limiters: LimiterRegistry | None = None, **settings: Any) -> Runtime:
    """A runtime on ``pool`` with ``providers`` (or loaded plugins); ``settings`` override
    :class:`~daemon.settings.Settings` fields. Call ``await runtime.open()`` (it opens
    nothing of the pool's) before using its engine."""
    plugins = providers if isinstance(providers, Plugins) else plugins_with(providers)
    return Runtime(Settings(_env_file=None, **settings),
                   plugins=plugins, sync=sync, tokens=tokens, pool=pool, http=http,
                   limiters=limiters)
