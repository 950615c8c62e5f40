"""Benchmark: ``syncd run`` with a large generated config (10,000 venues; ``--quick``: 2,000).

Starts ``syncd run`` on a fresh migrated database with a generated config directory (one
Mailchimp integration per venue, two cron schedules each) and an idle Mailchimp emulator
behind ``SYNCD_SYNC_BASE_URLS``, listening on a ``NOTIFY_SOCKET`` of its own, and measures:

  startup_s   process start to systemd's READY=1 (serving HTTP, workers running)
  ready_s     process start to ``GET /readyz`` answering 200 (the leader applied the config,
              which is what readiness waits for)
  rss_mb      resident memory a few seconds after ready (peak_rss_mb: the most it ever held)
  shutdown_s  SIGTERM to exit, idle (nothing running; the scheduler's first pass may be)

Goals: rss_mb under 150, ready_s under 30, shutdown_s under 1. The last line is JSON.
Run as a module, ``python -m bench.daemon [--quick]`` (as a file, this script would shadow
the ``daemon`` package), with the Postgres the tests use (SYNCD_TEST_DATABASE_URL,
127.0.0.1:5432 or the embedded one).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

from daemon.plugins import load_plugins
from daemon.provider import EmulatorSettings
from daemon.testing.emulator import EmulatorServer
from daemon.testing.postgres import find_server
from daemon.testing.venues import generate_venues

SYNCD = str(Path(sys.executable).parent / "syncd")
GOALS = {"rss_mb": 150.0, "ready_s": 30.0, "shutdown_s": 1.0}


def _memory(pid: int) -> tuple[float, float]:
    """(VmRSS, VmHWM) of ``pid`` in MB."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            fields[key] = int(value.split()[0]) / 1024
    return fields["VmRSS"], fields["VmHWM"]


def _ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(url + "/readyz", timeout=5) as response:  # noqa: S310
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


async def measure(venues: int, settle: float) -> dict[str, object]:
    server = await find_server()
    db_url = await server.create_database()
    tmp = Path(tempfile.mkdtemp(prefix="syncd-bench-daemon-"))
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(tmp / "notify"))
    sock.setblocking(False)
    proc: subprocess.Popen[bytes] | None = None
    try:
        generate_venues(tmp / "config", venues)
        provider = load_plugins(["mailchimp"]).provider("mailchimp")
        async with EmulatorServer(provider.emulator(EmulatorSettings(seed=7))) as emulator:
            env = {k: v for k, v in os.environ.items()
                   if not k.startswith("SYNCD_") and k != "DATABASE_URL"}
            env.update({
                "SYNCD_DATABASE_URL": db_url, "SYNCD_CONFIG_DIR": str(tmp / "config"),
                "SYNCD_LOG_FORMAT": "json", "SYNCD_LOG_LEVEL": "warning",
                "SYNCD_PLUGINS": "mailchimp",
                "SYNCD_SYNC_BASE_URLS": json.dumps({"mailchimp": emulator.url}),
                # Idle: the first start's catch-up ticks fall due over a day, not now.
                "SYNCD_SCHEDULER_CATCHUP_SPREAD_SECONDS": "86400",
                "NOTIFY_SOCKET": str(tmp / "notify")})
            log = (tmp / "run.log").open("wb")
            start = time.monotonic()
            proc = subprocess.Popen(  # noqa: ASYNC220 - started once, then only polled
                [SYNCD, "run", "--port", "0"], env=env, cwd=tmp, stdout=log,
                stderr=subprocess.STDOUT)
            url = ""
            startup_s = ready_s = None
            while ready_s is None:
                if proc.poll() is not None:
                    raise SystemExit("syncd run exited:\n"
                                     + (tmp / "run.log").read_text()[-3000:])
                if time.monotonic() - start > 300:
                    raise SystemExit("syncd run was not ready within 300 s")
                with contextlib.suppress(BlockingIOError):
                    while True:
                        message = sock.recv(4096).decode()
                        if "READY=1" in message and startup_s is None:
                            startup_s = time.monotonic() - start
                            status = next(line for line in message.splitlines()
                                          if line.startswith("STATUS="))
                            url = status.split()[2]
                if url and _ready(url):
                    ready_s = time.monotonic() - start
                    break
                await asyncio.sleep(0.25)
            await asyncio.sleep(settle)
            rss_mb, peak_mb = _memory(proc.pid)
            proc.send_signal(signal.SIGTERM)
            sent = time.monotonic()
            code = await asyncio.to_thread(proc.wait, 60)
            shutdown_s = time.monotonic() - sent
            log.close()
            if code != 0:
                raise SystemExit(f"syncd run exited {code} after SIGTERM:\n"
                                 + (tmp / "run.log").read_text()[-3000:])
    finally:
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait(10)
        sock.close()
        shutil.rmtree(tmp, ignore_errors=True)
        await server.drop_database(db_url)
        await server.close()
    assert startup_s is not None
    return {"venues": venues, "rss_mb": round(rss_mb, 1), "peak_rss_mb": round(peak_mb, 1),
            "startup_s": round(startup_s, 2), "ready_s": round(ready_s, 2),
            "shutdown_s": round(shutdown_s, 2)}


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2,000 venues instead of 10,000")
    parser.add_argument("--venues", type=int, default=None)
    parser.add_argument("--settle", type=float, default=3.0,
                        help="seconds after ready before memory is read")
    args = parser.parse_args()
    venues = args.venues or (2_000 if args.quick else 10_000)
    result = asyncio.run(measure(venues, args.settle))
    for key, goal in GOALS.items():
        value = result[key]
        assert isinstance(value, float)
        result[f"{key}_goal_met"] = value < goal
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
