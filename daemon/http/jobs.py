"""The queue's job handler: webhook processing jobs here, every other job to the sync engine.

Registered as the ``default`` entry of the ``syncd.job_handlers`` entry-point group, so
``syncd worker`` runs both kinds. A webhook processing job is recognised by its entity type
(:data:`~daemon.http.store.PROCESSING_ENTITY`).
"""

from __future__ import annotations

from daemon.http.processing import WebhookProcessor
from daemon.http.store import PROCESSING_ENTITY
from daemon.queue.types import Job, JobContext, JobHandler, JobResult

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


def _handle() -> Dispatcher:
    from daemon.sync.job import handle as sync_handle

    return Dispatcher(WebhookProcessor(), sync_handle)


#: The handler ``syncd worker`` runs.
handle = _handle()
