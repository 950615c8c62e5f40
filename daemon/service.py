"""``syncd run``: every part of syncd in one process, on one runtime.

At start the process checks migrations (and refuses to start with pending ones unless told
to apply them), then serves HTTP (webhooks, health, readiness, metrics, the admin API), runs
queue workers (sync jobs and webhook processing) and contends for leadership. The leader,
one replica at a time, also reconciles the config directory, fires cron ticks and runs the
health monitor (see :mod:`daemon.leader`).

Signals:

- the first SIGTERM (or SIGINT) stops claiming jobs and the leader's duties, lets running
  jobs finish within ``SYNCD_WORKER_GRACE_SECONDS``, hands back the leases of those that do
  not, stops serving and exits 0;
- a second SIGTERM or SIGINT exits at once (status 128 + the signal): the leases of running
  jobs expire and other replicas run them;
- SIGHUP makes the leader reconcile the config now.

Under systemd (``Type=notify``) it sends ``READY=1`` once serving, ``WATCHDOG=1`` heartbeats,
``STOPPING=1`` when shutdown begins and ``STATUS=`` lines (see :mod:`daemon.systemd`).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Gauge

from daemon.errors import SyncdError
from daemon.leader import Leadership
from daemon.logs import get_logger
from daemon.runtime import Runtime
from daemon.systemd import Notifier

if TYPE_CHECKING:
    from daemon.reconcile.watch import Reconciler
    from daemon.worker.runner import Worker

__all__ = ["Daemon"]

log = get_logger("syncd.run")


class Daemon:
    """One ``syncd run`` process over an open :class:`~daemon.runtime.Runtime`."""

    def __init__(
        self,
        runtime: Runtime,
        *,
        host: str,
        port: int,
        handler: str | None = None,
        owner: str | None = None,
        migrate: bool = False,
        notifier: Notifier | None = None,
        on_listening: Callable[[str], None] | None = None,
    ) -> None:
        self.runtime = runtime
        self.host = host
        self.port = port
        self.handler_spec = handler
        self.owner = owner
        self.migrate = migrate
        self.notifier = notifier or Notifier()
        self.on_listening = on_listening
        self.url: str | None = None
        self.registry = CollectorRegistry()
        self._leader_gauge = Gauge("syncd_leader", "1 while this replica leads (reconcile, "
                                   "scheduling, health), else 0", registry=self.registry)
        self._stop = asyncio.Event()
        self._signals = 0
        self._reconciler: Reconciler | None = None
        self.worker: Worker | None = None
        self.leadership: Leadership | None = None

    # --- start-up ----------------------------------------------------------------------

    async def _migrations(self) -> None:
        pending = await self.runtime.pending_migrations()
        if not pending:
            return
        if not self.migrate:
            raise SyncdError(
                f"{len(pending)} migration(s) pending ({', '.join(pending)}): run `syncd "
                "migrate` first, or start with --migrate (SYNCD_RUN_MIGRATE=true)")
        from daemon.migrate import apply_migrations

        self.notifier.status(f"applying {len(pending)} migration(s)")
        async with self.runtime.pool.acquire() as conn:
            await apply_migrations(conn)

    # --- the leader's duties -----------------------------------------------------------

    async def _lead(self) -> None:
        """Reconcile, schedule and monitor health until cancelled (leadership lost or
        shutdown). Built anew each term: nothing of an earlier term's state carries over."""
        runtime = self.runtime
        never = asyncio.Event()  # the duties end by cancellation
        reconciler = runtime.reconciler()
        scheduler = runtime.scheduler()
        health = runtime.health_monitor()
        self._reconciler = reconciler
        try:
            async with asyncio.TaskGroup() as group:
                group.create_task(reconciler.run(never, handle_sighup=False),
                                  name="leader.reconcile")
                group.create_task(scheduler.lead(), name="leader.schedule")
                group.create_task(health.run(never), name="leader.health")
        finally:
            self._reconciler = None

    def _leader_changed(self, leading: bool) -> None:
        self._leader_gauge.set(1 if leading else 0)
        self.notifier.status(self._status())

    def _status(self) -> str:
        role = "leader" if self.leadership is not None and self.leadership.is_leader \
            else "follower"
        return f"serving on {self.url or '-'} as {role}"

    # --- signals -----------------------------------------------------------------------

    def _signal(self, signum: int) -> None:
        name = signal.Signals(signum).name
        self._signals += 1
        if self._signals == 1:
            log.info("run.signal", signal=name, action="graceful shutdown")
            self.stop()
            return
        log.warning("run.signal", signal=name, action="exit now")
        self.notifier.stopping("exiting at once")
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()
        os._exit(128 + signum)

    def _reload(self) -> None:
        reconciler = self._reconciler
        leading = reconciler is not None
        log.info("run.reload_requested", leader=leading)
        if reconciler is not None:
            reconciler.request()

    def stop(self) -> None:
        """Begin a graceful shutdown (what the first SIGTERM does)."""
        self._stop.set()

    # --- the process -------------------------------------------------------------------

    async def run(self) -> None:
        """Start every part, serve until stopped, then shut down in order."""
        from daemon.commands.serve import build_app
        from daemon.http import state
        from daemon.http.metrics import REGISTRY as HTTP_REGISTRY
        from daemon.http.server import listening
        from daemon.queue.metrics import REGISTRY as QUEUE_REGISTRY

        runtime = self.runtime
        settings = runtime.settings
        self.notifier.status("starting")
        await self._migrations()
        handler = runtime.job_handler(self.handler_spec)
        worker = self.worker = runtime.worker(handler, owner=self.owner)
        leadership = self.leadership = Leadership(
            runtime.dsn, self._lead, retry_seconds=settings.leader_retry_seconds,
            check_seconds=settings.leader_check_seconds,
            connect_timeout=settings.db_connect_timeout, name=worker.owner)
        leadership.on_change(self._leader_changed)
        app = build_app(runtime, registries=(QUEUE_REGISTRY, HTTP_REGISTRY, self.registry))
        app[state.LEADER] = lambda: leadership.is_leader
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._signal, int(sig))
        loop.add_signal_handler(signal.SIGHUP, self._reload)
        tasks: list[asyncio.Task[None]] = []
        try:
            async with listening(app, settings, host=self.host, port=self.port) as url:
                self.url = url
                tasks = [asyncio.create_task(worker.run(), name="run.worker"),
                         asyncio.create_task(leadership.run(), name="run.leadership")]
                stop = asyncio.create_task(self._stop.wait(), name="run.stop")
                log.info("run.ready", url=url, owner=worker.owner,
                         concurrency=worker.config.concurrency,
                         retry=runtime.retry.describe())
                self.notifier.ready(self._status())
                self.notifier.start_watchdog(
                    healthy=lambda: all(not t.done() for t in tasks))
                if self.on_listening is not None:
                    self.on_listening(url)
                await asyncio.wait([stop, *tasks], return_when=asyncio.FIRST_COMPLETED)
                stop.cancel()
                crashed = [t for t in tasks if t.done() and not t.cancelled()
                           and t.exception() is not None]
                self.notifier.stopping("stopping: finishing running jobs")
                log.info("run.stopping", grace_s=worker.config.grace_seconds)
                leadership.stop()
                worker.stop()
                await asyncio.gather(*tasks, return_exceptions=True)
                if crashed:
                    failure = crashed[0].exception()
                    raise SyncdError(f"syncd run stopped: {type(failure).__name__}: "
                                     f"{failure}") from failure
        finally:
            for task in tasks:
                task.cancel()
            for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                with contextlib.suppress(Exception):
                    loop.remove_signal_handler(sig)
            await self.notifier.close()
        log.info("run.stopped", owner=worker.owner)
