"""The queue's job handler: webhook processing jobs here, every other job to the sync engine.

:func:`handle` is the ``default`` entry of the ``syncd.job_handlers`` entry-point group: a
factory the runtime calls with itself, so ``syncd worker`` and ``syncd run`` run both kinds
on the runtime's engine and plugins. A webhook processing job is recognised by its entity
type (:data:`~daemon.http.store.PROCESSING_ENTITY`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from daemon.http.store import PROCESSING_ENTITY
from daemon.queue.types import Job, JobContext, JobHandler, JobResult

if TYPE_CHECKING:
    from daemon.runtime import Runtime

__all__ = ["Dispatcher", "handle"]


class Dispatcher:
    """Routes each job to the handler of its kind."""

    def __init__(self, webhooks: JobHandler, default: JobHandler) -> None:
        self.webhooks = webhooks
        self.default = default

    async def __call__(self, job: Job, ctx: JobContext) -> JobResult:
        if job.entity_type == PROCESSING_ENTITY:
            return await self.webhooks(job, ctx)
        return await self.default(job, ctx)


def handle(runtime: Runtime) -> Dispatcher:
    """The handler the runtime's workers run (the entry point's factory)."""
    return Dispatcher(runtime.webhook_processor(), runtime.sync_handler())
