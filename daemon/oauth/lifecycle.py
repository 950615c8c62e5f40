"""An integration's connection status: connected, error (with its reason), disconnected.

:func:`mark_failed` is the one place an integration is put in ``error`` for good because its
credentials cannot be had; it then calls the ``syncd_integration_failed`` hook, whose default
only logs.
"""

from __future__ import annotations

from typing import Any

import asyncpg

from daemon import hookimpl
from daemon.logs import get_logger
from daemon.plugins import Plugins, await_me_maybe
from daemon.sql import queries

__all__ = ["LoggingHooks", "integration_failed", "mark_connected", "mark_disconnected",
           "mark_failed"]

log = get_logger("syncd.integration")
_Q = queries("vault.sql")
_PLUGIN_NAME = "syncd.integration"


class LoggingHooks:
    """The default ``syncd_integration_failed``: one log event."""

    @hookimpl(trylast=True)
    def syncd_integration_failed(self, venue_id: str, provider: str, reason: str) -> None:
        log.error("integration.failed", venue_id=venue_id, provider=provider, reason=reason)


async def integration_failed(plugins: Plugins | None, venue_id: str, provider: str,
                             reason: str) -> None:
    """Call every ``syncd_integration_failed`` implementation; one failing is logged only."""
    if plugins is None:
        LoggingHooks().syncd_integration_failed(venue_id, provider, reason)
        return
    if not plugins.pm.has_plugin(_PLUGIN_NAME):
        plugins.pm.register(LoggingHooks(), name=_PLUGIN_NAME)
    for impl in plugins.hook.syncd_integration_failed.get_hookimpls():
        try:
            result: Any = impl.function(venue_id=venue_id, provider=provider, reason=reason)
            await await_me_maybe(result)
        except Exception as exc:
            log.error("integration.failed_hook_error", plugin=impl.plugin_name,
                      error=f"{type(exc).__name__}: {exc}")


async def mark_connected(conn: Any, venue_id: str, provider: str) -> None:
    await conn.execute(_Q["mark_connected"], venue_id, provider)
    log.info("integration.connected", venue_id=venue_id, provider=provider)


async def mark_disconnected(conn: Any, venue_id: str, provider: str) -> None:
    await conn.execute(_Q["mark_disconnected"], venue_id, provider)
    log.info("integration.disconnected", venue_id=venue_id, provider=provider)


async def mark_failed(pool: asyncpg.Pool, plugins: Plugins | None, venue_id: str,
                      provider: str, reason: str) -> None:
    """Status ``error`` with ``reason``, health ``unhealthy``, then the notification hook."""
    async with pool.acquire() as conn:
        await conn.execute(_Q["mark_failed"], venue_id, provider, reason)
    await integration_failed(plugins, venue_id, provider, reason)
