"""systemd's notify protocol, spoken directly: datagrams on the ``NOTIFY_SOCKET`` unix socket.

With ``Type=notify`` systemd hands the service ``NOTIFY_SOCKET`` (a path, or ``@name`` for an
abstract socket) and waits for ``READY=1`` before it counts the start as done. With
``WatchdogSec=`` it also sets ``WATCHDOG_USEC`` (and ``WATCHDOG_PID``), and restarts the
service when no ``WATCHDOG=1`` arrives within that time. ``STOPPING=1`` says shutdown began;
``STATUS=...`` is the line ``systemctl status`` shows.

Without ``NOTIFY_SOCKET`` every call does nothing, so the same code runs under any
supervisor. A send that fails is logged once and never raises: the daemon must not stop
because its supervisor went away.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
from collections.abc import Callable, Mapping

from daemon.logs import get_logger

__all__ = ["Notifier"]

log = get_logger("syncd.systemd")


class Notifier:
    """Sends notify messages to the socket the environment names (if any)."""

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        address = env.get("NOTIFY_SOCKET", "")
        if address.startswith("@"):
            address = "\0" + address[1:]  # an abstract socket
        self.address = address
        self.watchdog_seconds: float | None = None
        usec = env.get("WATCHDOG_USEC", "")
        pid = env.get("WATCHDOG_PID", "")
        if usec.isdigit() and int(usec) > 0 and (not pid or pid == str(os.getpid())):
            self.watchdog_seconds = int(usec) / 1_000_000
        self._sock: socket.socket | None = None
        self._failed = False
        self._task: asyncio.Task[None] | None = None

    @property
    def enabled(self) -> bool:
        return bool(self.address)

    def notify(self, **fields: str | int) -> bool:
        """Send one message, ``KEY=value`` lines (``notify(READY=1, STATUS="...")``);
        whether it was sent."""
        if not self.address:
            return False
        text = "\n".join(f"{key}={_one_line(str(value))}" for key, value in fields.items())
        try:
            if self._sock is None:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
                self._sock.setblocking(False)
            self._sock.sendto(text.encode("utf-8"), self.address)
        except OSError as exc:
            self.release()
            if not self._failed:
                self._failed = True
                log.warning("systemd.notify_failed", error=f"{type(exc).__name__}: {exc}")
            return False
        return True

    def ready(self, status: str) -> None:
        self.notify(READY=1, STATUS=status, MAINPID=os.getpid())

    def status(self, status: str) -> None:
        self.notify(STATUS=status)

    def stopping(self, status: str = "stopping") -> None:
        self.notify(STOPPING=1, STATUS=status)

    def start_watchdog(self, healthy: Callable[[], bool] | None = None) -> None:
        """Send ``WATCHDOG=1`` every half of ``WATCHDOG_USEC`` while the loop runs (and
        ``healthy()``, when given, says so): a stuck event loop stops the heartbeats and
        systemd restarts the service."""
        if self.watchdog_seconds is None or not self.address or self._task is not None:
            return
        self._task = asyncio.get_running_loop().create_task(
            self._watchdog(self.watchdog_seconds / 2, healthy), name="systemd.watchdog")

    async def _watchdog(self, every: float, healthy: Callable[[], bool] | None) -> None:
        while True:
            if healthy is None or healthy():
                self.notify(WATCHDOG=1)
            await asyncio.sleep(every)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        self.release()

    def release(self) -> None:
        """Close the socket (the next message opens it again)."""
        if self._sock is not None:
            self._sock.close()
            self._sock = None


def _one_line(text: str) -> str:
    return " ".join(text.split())
