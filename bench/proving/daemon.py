"""The syncd processes a scenario runs against, started as an operator starts them.

:class:`Daemon` is the one place that knows which commands make up "syncd running": today a
replica is a ``syncd worker`` process (queue workers and, while leader, the scheduler), the
HTTP surface one ``syncd serve`` process beside them and the config watcher one ``syncd
apply --watch``. Every scenario starts, kills and stops syncd only through this class, so
switching to one ``syncd run`` process per replica changes :meth:`Daemon._replica_commands`
and :meth:`Daemon.start` and nothing else.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SYNCD = str(Path(sys.executable).parent / "syncd")
_LISTENING = re.compile(r"listening on (http://\S+)")


@dataclass
class Process:
    """One OS process of syncd and the file it logs to."""

    name: str
    popen: subprocess.Popen[bytes]
    log: Path

    @property
    def alive(self) -> bool:
        return self.popen.poll() is None


@dataclass
class Daemon:
    """syncd for one scenario: ``replicas`` replicas (and the HTTP server when ``http``) on
    ``db_url``, with ``env`` on top of a clean environment (no ``SYNCD_*`` from the caller).

    Logs go to ``logdir/<process>.log``, appended across restarts, so a scenario can search
    everything syncd wrote.
    """

    db_url: str
    logdir: Path
    env: Mapping[str, str] = field(default_factory=dict)
    replicas: int = 1
    http: bool = False
    #: Apply this config directory and keep applying it as it changes.
    config_dir: Path | None = None
    #: Settings of one replica only (replica index -> variables), on top of ``env``.
    replica_env: dict[int, dict[str, str]] = field(default_factory=dict)
    url: str = ""
    processes: dict[str, Process] = field(default_factory=dict)
    kills: int = 0
    #: How many times each process has been started (its log is appended to).
    starts: dict[str, int] = field(default_factory=dict)

    def environment(self) -> dict[str, str]:
        base = {k: v for k, v in os.environ.items()
                if not k.startswith("SYNCD_") and k != "DATABASE_URL"}
        base.update({
            "PYTHONPATH": str(ROOT),
            "SYNCD_DATABASE_URL": self.db_url,
            "SYNCD_DATA_DIR": str(self.logdir / "data"),
            "SYNCD_LOG_FORMAT": "json",
            "SYNCD_LOG_LEVEL": "info",
        })
        base.update(self.env)
        return base

    # --- what "a replica" is ----------------------------------------------------------------

    @staticmethod
    def _replica_commands(index: int) -> list[tuple[str, list[str]]]:
        """The processes of replica ``index``: (name, argv) pairs."""
        return [(f"worker-{index}", [SYNCD, "worker", "--owner", f"replica-{index}"])]

    def _spawn(self, name: str, argv: list[str],
               extra: Mapping[str, str] | None = None) -> Process:
        self.logdir.mkdir(parents=True, exist_ok=True)
        log = self.logdir / f"{name}.log"
        with log.open("ab") as out:
            popen = subprocess.Popen(argv, env={**self.environment(), **(extra or {})},
                                     cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
        process = Process(name, popen, log)
        self.processes[name] = process
        self.starts[name] = self.starts.get(name, 0) + 1
        return process

    async def start(self, *, timeout: float = 90) -> None:
        """Start every replica (and the HTTP server), and wait until each is up."""
        for index in range(self.replicas):
            self.start_replica(index)
        if self.http:
            self._spawn("http", [SYNCD, "serve", "--host", "127.0.0.1", "--port", "0"])
        if self.config_dir is not None:
            self._spawn("config", [SYNCD, "apply", "--watch", "--config", str(self.config_dir)])
        await self.wait_started(timeout=timeout)

    def start_replica(self, index: int) -> None:
        for name, argv in self._replica_commands(index):
            self._spawn(name, argv, self.replica_env.get(index))

    def replica_processes(self, index: int) -> list[Process]:
        names = {name for name, _ in self._replica_commands(index)}
        return [p for n, p in self.processes.items() if n in names]

    async def wait_started(self, *, timeout: float = 90,
                           only: list[Process] | None = None) -> None:
        """Wait until each process (of ``only``, else all) says it is up in its log."""
        deadline = time.monotonic() + timeout
        for process in only or list(self.processes.values()):
            want = self.starts[process.name]
            while True:
                text = self.read_log(process)
                if process.name == "http":
                    found = _LISTENING.findall(text)
                    if len(found) >= want:
                        self.url = found[-1].rstrip("/")
                        break
                elif process.name == "config":
                    if text.count('"config.reconciled"') >= want:
                        break
                elif text.count('"worker.started"') >= want:
                    break
                if not process.alive:
                    raise RuntimeError(f"{process.name} exited with {process.popen.returncode}:"
                                       f" {text[-2000:]}")
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{process.name} did not start: {text[-2000:]}")
                await asyncio.sleep(0.1)

    # --- faults -------------------------------------------------------------------------------

    def kill(self, index: int, sig: signal.Signals = signal.SIGKILL) -> None:
        """Send ``sig`` (kill -9 by default) to every process of replica ``index``."""
        for process in self.replica_processes(index):
            if process.alive:
                process.popen.send_signal(sig)
                if sig == signal.SIGKILL:
                    process.popen.wait(30)
                    self.kills += 1

    async def restart(self, index: int, *, timeout: float = 90) -> None:
        """Start replica ``index`` again after a kill, and wait until it is up."""
        self.start_replica(index)
        await self.wait_started(timeout=timeout, only=self.replica_processes(index))

    # --- the end --------------------------------------------------------------------------------

    async def stop(self, *, timeout: float = 60) -> dict[str, int | None]:
        """SIGTERM every process still running, wait for each; answers the exit codes."""
        for process in self.processes.values():
            if process.alive:
                process.popen.send_signal(signal.SIGTERM)
        codes: dict[str, int | None] = {}
        deadline = time.monotonic() + timeout
        for process in self.processes.values():
            with contextlib.suppress(subprocess.TimeoutExpired):
                await asyncio.to_thread(process.popen.wait,
                                        max(0.1, deadline - time.monotonic()))
            if process.alive:
                process.popen.kill()
                process.popen.wait(10)
                codes[process.name] = None
            else:
                codes[process.name] = process.popen.returncode
        return codes

    def kill_all(self) -> None:
        for process in self.processes.values():
            if process.alive:
                process.popen.kill()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    process.popen.wait(10)

    @staticmethod
    def read_log(process: Process) -> str:
        try:
            return process.log.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def logs(self) -> str:
        """Everything every process wrote, restarts included."""
        return "\n".join(self.read_log(p) for p in self.processes.values())

    async def __aenter__(self) -> Daemon:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        if exc[0] is not None:
            self.kill_all()
        else:
            await self.stop()
