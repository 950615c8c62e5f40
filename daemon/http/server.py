"""Serving the app: one TCP site with the configured request limits."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from aiohttp import web

from daemon.http.app import handler_args
from daemon.logs import get_logger
from daemon.settings import Settings

__all__ = ["listening", "serve"]

log = get_logger("syncd.http")


@asynccontextmanager
async def listening(app: web.Application, settings: Settings, *, host: str,
                    port: int) -> AsyncIterator[str]:
    """Serve ``app`` for the length of the block; yields its base URL (port 0: any free)."""
    limits = handler_args(settings)
    runner = web.AppRunner(app, access_log=None, handler_cancellation=True,
                           shutdown_timeout=10.0,
                           max_field_size=limits["max_field_size"],
                           max_line_size=limits["max_line_size"],
                           max_headers=limits["max_headers"])
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port)
        await site.start()
        bound = runner.addresses
        actual = int(bound[0][1]) if bound else port
        shown = f"[{host}]" if ":" in host else host
        yield f"http://{shown}:{actual}"
    finally:
        await runner.cleanup()


async def serve(app: web.Application, settings: Settings, *, host: str, port: int,
                on_listening: Callable[[str], None] | None = None) -> None:
    """Serve ``app`` until SIGTERM or SIGINT; open requests finish, then cleanup runs."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        async with listening(app, settings, host=host, port=port) as url:
            log.info("http.listening", url=url)
            if on_listening is not None:
                on_listening(url)
            await stop.wait()
            log.info("http.stopping")
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(Exception):
                loop.remove_signal_handler(sig)
