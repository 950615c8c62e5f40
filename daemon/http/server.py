"""Serving the app: one TCP site with the configured request limits."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from daemon.http.app import handler_args
from daemon.logs import get_logger
from daemon.settings import Settings

__all__ = ["listening", "serve"]

log = get_logger("syncd.http")


class _BadRequests(logging.Filter):
    """Requests the parser refused (oversized or too many headers, malformed HTTP) were
    answered 400/431 already; log one line for each, not aiohttp's error with a traceback,
    so that anyone on the internet cannot fill the log with tracebacks."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, HttpProcessingError):
            log.info("http.bad_request", status=exc.code, reason=exc.message.strip()[:200])
            return False
        return True


_FILTER = _BadRequests()


@asynccontextmanager
async def listening(app: web.Application, settings: Settings, *, host: str,
                    port: int) -> AsyncIterator[str]:
    """Serve ``app`` for the length of the block; yields its base URL (port 0: any free)."""
    server_log = logging.getLogger("aiohttp.server")
    if _FILTER not in server_log.filters:
        server_log.addFilter(_FILTER)
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
