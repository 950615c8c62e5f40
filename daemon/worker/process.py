"""``syncd worker``'s process: the workers, and the scheduler while this replica leads.

SIGTERM or SIGINT stops claiming; running jobs get the grace period to finish, then are
cancelled and their leases released so another worker takes them at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal

from daemon.logs import get_logger
from daemon.queue.types import JobHandler
from daemon.runtime import Runtime

__all__ = ["run_worker_process"]

log = get_logger("syncd.worker")


async def run_worker_process(
    runtime: Runtime,
    handler: JobHandler,
    *,
    scheduler: bool = True,
    owner: str | None = None,
) -> None:
    """Run until SIGTERM/SIGINT, then drain. ``runtime`` is open."""
    worker = runtime.worker(handler, owner=owner)
    sched = runtime.scheduler() if scheduler else None
    loop = asyncio.get_running_loop()

    def shutdown(signame: str) -> None:
        log.info("worker.signal", signal=signame)
        worker.stop()
        if sched is not None:
            sched.stop()

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, shutdown, sig.name)
    tasks = [asyncio.create_task(worker.run(), name="worker")]
    if sched is not None:
        tasks.append(asyncio.create_task(sched.run(), name="scheduler"))
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
        for task in done:
            if task.exception() is not None:
                shutdown("error")
        await asyncio.gather(*tasks)
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(Exception):
                loop.remove_signal_handler(sig)
