"""Background processing of stored webhook events (a CRITICAL-lane queue job per provider).

The job drains the provider's pending events, oldest first, in batches locked with
``FOR UPDATE SKIP LOCKED`` inside transactions fenced by the job's lease. For each event:

- the provider plugin parses the stored raw body into inbound changes;
- each change is matched to its venue: the venue of the URL it was delivered to, else the
  integration connected to the provider account the change carries (the account id the
  OAuth flow recorded, an ``account`` credential fact, or an account option such as
  Stripe's ``account`` or Mailchimp's ``list_id``);
- a matched change with an entity becomes an ``inbound_changes`` row (with the local record
  its remote id is linked to), and a sync of that venue's entity is queued on the HIGH lane
  when the integration is enabled and schedules that entity (pending syncs coalesce, so a
  burst of events queues one);
- the event is marked ``processed``, or ``ignored`` with the reason (nothing the plugin
  understands, no venue for the account, an account shared by several venues, no entity);
- once the events are settled, the provider's inbound changes are processed into the
  platform (:class:`daemon.inbound.InboundProcessor`), each with its outcome.

An event whose processing raises is counted and left pending for the job's retry; after
``max_attempts`` it is marked ``failed`` with the error, the webhook's dead letter.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg

from daemon.inbound.processor import InboundProcessor
from daemon.logs import get_logger
from daemon.provider import Entity, InboundChange, Provider, WebhookRequest
from daemon.queue.enqueue import enqueue
from daemon.queue.types import Job, JobContext, JobResult, Outcome
from daemon.sql import queries

__all__ = ["WebhookProcessor"]

log = get_logger("syncd.http")
_Q = queries("webhooks.sql")


def _fields_json(change: InboundChange) -> dict[str, Any] | None:
    """The change's values as stored (None: it carries none)."""
    if change.fields is None:
        return None
    stored: dict[str, Any] = json.loads(json.dumps(dict(change.fields), default=str))
    return stored


@dataclass(frozen=True, slots=True)
class _Settled:
    status: str
    event_type: str
    venue_id: uuid.UUID | None
    reason: str | None


class WebhookProcessor:
    """The job handler for webhook processing jobs."""

    def __init__(self, providers: Mapping[str, Provider], *, batch_size: int = 100,
                 max_attempts: int = 5, inbound: InboundProcessor | None = None) -> None:
        """``providers`` are the runtime's loaded ones; ``max_attempts`` is
        ``SYNCD_WEBHOOK_MAX_ATTEMPTS``; ``inbound`` processes the changes the events
        became (the runtime's processor; None: they wait for a sync job's pass)."""
        self.providers = providers
        self.batch_size = batch_size
        self.max_attempts = max_attempts
        self.inbound = inbound

    async def __call__(self, job: Job, ctx: JobContext) -> JobResult:
        providers, max_attempts = self.providers, self.max_attempts
        provider = providers.get(job.provider)
        if provider is None:
            return JobResult(Outcome.FAILED, f"provider {job.provider!r} is not loaded")
        skipped: list[uuid.UUID] = []
        failures = 0
        counts: dict[str, int] = {}
        while not ctx.cancelled:
            async with ctx.pool.acquire() as conn, conn.transaction():
                await ctx.assert_lease(conn)
                rows = await conn.fetch(_Q["pending_events"], provider.name, self.batch_size,
                                        skipped)
                if not rows:
                    break
                for row in rows:
                    try:
                        async with conn.transaction():
                            settled = await self._process(conn, provider, row)
                    except (asyncpg.InterfaceError, OSError):
                        raise  # the connection is gone: the job is retried
                    except Exception as exc:
                        failures += 1
                        skipped.append(row["id"])
                        error = f"{type(exc).__name__}: {exc}"[:500]
                        status = await conn.fetchval(_Q["event_failed"], row["id"], error,
                                                     max_attempts)
                        log.warning("webhook.processing_failed", provider=provider.name,
                                    event_id=str(row["id"]), status=status,
                                    error=type(exc).__name__)
                        continue
                    await conn.execute(_Q["settle_event"], row["id"], settled.status,
                                       settled.event_type, settled.venue_id, settled.reason)
                    counts[settled.status] = counts.get(settled.status, 0) + 1
        log.info("webhook.processed", provider=provider.name, failed=failures, **counts)
        if not ctx.cancelled and self.inbound is not None:
            # Inventory counts wait for their integration's sync job (daemon/inventory.py).
            await self.inbound.process(provider=provider.name, guard=ctx.assert_lease,
                                  cancelled=lambda: ctx.cancelled,
                                  skip_entities=(Entity.INVENTORY.value,))
        if ctx.cancelled:
            return JobResult(Outcome.RETRY, "cancelled")
        if failures:
            return JobResult(Outcome.RETRY, f"{failures} webhook events failed to process")
        return JobResult(Outcome.COMPLETED)

    async def _process(self, conn: asyncpg.Connection, provider: Provider,
                       row: Mapping[str, Any]) -> _Settled:
        headers = row["headers"] if isinstance(row["headers"], Mapping) else {}
        request = WebhookRequest(headers={str(k): str(v) for k, v in headers.items()},
                                 body=bytes(row["body"] or b""), url="",
                                 received_at=row["received_at"])
        changes = provider.parse_webhook(request)
        if not changes:
            return _Settled("ignored", "", None, "nothing the provider plugin understands")
        event_type = changes[0].event_type[:200]
        reasons: list[str] = []
        recorded: uuid.UUID | None = None
        for change in changes:
            venue, reason = await self._venue(conn, provider.name, row["venue_id"], change)
            if venue is None:
                reasons.append(reason)
                continue
            if change.entity is None:
                reasons.append(f"{change.event_type or 'the event'} concerns no synced entity")
                continue
            await self._record(conn, provider.name, venue, change, row)
            recorded = recorded or venue["venue_id"]
        if recorded is not None:
            return _Settled("processed", event_type, recorded, None)
        return _Settled("ignored", event_type, row["venue_id"], "; ".join(sorted(set(reasons))))

    async def _venue(self, conn: asyncpg.Connection, provider: str, venue_id: uuid.UUID | None,
                     change: InboundChange) -> tuple[Mapping[str, Any] | None, str]:
        if venue_id is not None:
            row = await conn.fetchrow(_Q["integration_of_venue"], venue_id, provider)
            if row is None:
                return None, f"venue {venue_id} has no {provider} integration"
            return row, ""
        if not change.account_id:
            return None, "the event names no account"
        rows: Sequence[Mapping[str, Any]] = await conn.fetch(_Q["integrations_of_account"],
                                                             provider, change.account_id)
        if not rows:
            return None, f"no venue is connected to {provider} account {change.account_id}"
        if len(rows) > 1:
            return None, (f"{provider} account {change.account_id} is connected to "
                          f"{len(rows)} venues")
        return rows[0], ""

    async def _record(self, conn: asyncpg.Connection, provider: str,
                      integration: Mapping[str, Any], change: InboundChange,
                      row: Mapping[str, Any]) -> None:
        assert change.entity is not None
        venue_id: uuid.UUID = integration["venue_id"]
        entity = change.entity.value
        await conn.fetchval(
            _Q["record_inbound_change"], venue_id, provider, entity, change.remote_id,
            change.change, dict(change.payload), change.dedupe_key, change.occurred_at,
            row["received_at"], _fields_json(change))
        schedules = integration["schedules"] if isinstance(integration["schedules"],
                                                           Mapping) else {}
        if integration["enabled"] and entity in schedules:
            await enqueue(conn, venue_id=venue_id, provider=provider, entity_type=entity,
                          lane="HIGH", payload={"source": "webhook"},
                          correlation_id=f"webhook:{row['external_id']}"[:200])
