"""sd_notify over NOTIFY_SOCKET: messages as systemd reads them; nothing without it."""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import tempfile
from collections.abc import Iterator

import pytest

from daemon.systemd import Notifier


@pytest.fixture
def listener() -> Iterator[tuple[str, socket.socket]]:
    directory = tempfile.mkdtemp(prefix="sd")
    path = os.path.join(directory, "notify")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(2)
    yield path, sock
    sock.close()
    shutil.rmtree(directory, ignore_errors=True)


def _fields(sock: socket.socket) -> dict[str, str]:
    return dict(line.split("=", 1) for line in sock.recv(4096).decode().splitlines())


def test_ready_status_and_stopping_reach_the_socket(
        listener: tuple[str, socket.socket]) -> None:
    path, sock = listener
    notifier = Notifier({"NOTIFY_SOCKET": path})
    notifier.ready("serving on http://x\nwith a second line")
    assert _fields(sock) == {"READY": "1", "STATUS": "serving on http://x with a second line",
                             "MAINPID": str(os.getpid())}
    notifier.status("leader")
    assert _fields(sock) == {"STATUS": "leader"}
    notifier.stopping()
    assert _fields(sock) == {"STOPPING": "1", "STATUS": "stopping"}
    notifier.release()


def test_without_a_socket_nothing_is_sent() -> None:
    notifier = Notifier({})
    assert not notifier.enabled
    assert notifier.notify(READY=1) is False


def test_a_socket_that_is_gone_is_logged_not_raised() -> None:
    notifier = Notifier({"NOTIFY_SOCKET": "/nonexistent/notify"})
    assert notifier.notify(READY=1) is False
    assert notifier.notify(READY=1) is False


def test_the_watchdog_interval_is_for_this_process_only() -> None:
    assert Notifier({"NOTIFY_SOCKET": "@x", "WATCHDOG_USEC": "2000000"}).watchdog_seconds == 2
    other = Notifier({"NOTIFY_SOCKET": "@x", "WATCHDOG_USEC": "2000000", "WATCHDOG_PID": "1"})
    assert other.watchdog_seconds is None
    assert Notifier({"NOTIFY_SOCKET": "@x", "WATCHDOG_USEC": "0"}).watchdog_seconds is None
    assert Notifier({"NOTIFY_SOCKET": "@abstract"}).address == "\0abstract"


async def test_heartbeats_at_half_the_watchdog_interval_while_healthy(
        listener: tuple[str, socket.socket]) -> None:
    path, sock = listener
    sock.setblocking(False)
    healthy = True
    notifier = Notifier({"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "100000"})
    notifier.start_watchdog(lambda: healthy)
    await asyncio.sleep(0.3)
    healthy = False
    await asyncio.sleep(0.06)  # a beat in flight may still land
    beats = []
    while True:
        try:
            beats.append(sock.recv(64))
        except BlockingIOError:
            break
    assert beats
    assert set(beats) == {b"WATCHDOG=1"}
    await asyncio.sleep(0.2)
    with pytest.raises(BlockingIOError):
        sock.recv(64)  # unhealthy: no beat
    await notifier.close()
