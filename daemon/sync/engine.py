"""The sync engine: platform rows -> field mapping -> content hash -> changed records only ->
provider batches -> per-record outcomes -> entity links and records of work.

One :meth:`SyncEngine.run` syncs one integration (venue, provider). For each entity it reads
the source in chunks (only rows changed since the watermark, plus records that failed last
time, unless a full check is due), maps and hashes each record, skips those whose hash the
provider already has, and pushes the rest in batches of the provider's size, several at a
time as its rate limit allows. Each record's result updates its ``entity_links`` row in the
same transaction as the batch's other results, so a crash loses at most the batch in flight;
its idempotency key makes the retry replay rather than duplicate.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import random
import time
from collections.abc import AsyncGenerator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal

import asyncpg
import httpx

from daemon.credentials import CredentialError, CredentialStore
from daemon.errors import SyncdError
from daemon.inbound.fields import CONSENT_FIELDS, PLATFORM_FIELDS
from daemon.locks import AccountLocks
from daemon.logs import get_logger
from daemon.mapping import content_hash, get_path
from daemon.provider import (
    ClientContext,
    Credentials,
    Direction,
    Entity,
    EntitySupport,
    ErrorKind,
    InboundChange,
    OutboundRecord,
    Provider,
    ProviderClient,
    ProviderError,
    RecordResult,
)
from daemon.queue.types import LeaseLost
from daemon.ratelimit import LimiterRegistry
from daemon.retry import RetryPolicy
from daemon.source import SourceReader, SourceRecord, UnknownVenue, Venue
from daemon.sql import queries
from daemon.sync.compiled import compile_mapping
from daemon.sync.keys import create_key, update_key
from daemon.sync.mappings import ResolvedMapping, resolve_mappings
from daemon.sync.pacing import Pacer, push_concurrency, push_rate
from daemon.sync.report import EntityReport, PlannedRecord, RecordError, RunOutcome, RunReport
from daemon.sync.settings import SyncSettings, base_url_for

if TYPE_CHECKING:
    from daemon.inbound.processor import InboundProcessor

__all__ = ["Progress", "SyncEngine", "SyncError", "decide", "delete_policy"]

log = get_logger("syncd.sync")
_Q = queries("sync.sql")

#: ``progress(entity, scanned, sent, total)`` after each chunk and batch; ``total`` is the
#: number of source rows the run reads for that entity.
Progress = Callable[[Entity, int, int, int | None], None]
#: Called inside every transaction that writes results (the queue's lease check).
WriteGuard = Callable[[asyncpg.Connection], Awaitable[None]]
DeletePolicy = Literal["delete", "archive", "leave"]
_LINK_PAGE = 5000
#: Transactions a batch's outcomes get before they are stored as failures (see _write).
_WRITE_TRIES = 3
#: Inventory follows products: a count is kept on the catalog item a product push made.
_ORDER = (Entity.PRODUCT, Entity.INVENTORY, Entity.CUSTOMER, Entity.TRANSACTION)


class SyncError(SyncdError):
    """A run could not start: unknown integration, disabled, unusable configuration."""


class _AuthFailed(SyncdError):
    pass


class _Stop(SyncdError):
    pass


@dataclass(frozen=True, slots=True)
class _Link:
    remote_id: str | None
    content_hash: str | None
    remote_version: str | None
    state: str
    #: When the row was first written: with no remote id, when a create was first tried.
    created_at: datetime | None = None
    #: When a result was last stored (part of the state an update starts from).
    synced_at: datetime | None = None
    #: When the provider last refused the record (a create after it is a new request).
    refused_at: datetime | None = None

    @classmethod
    def of(cls, row: Mapping[str, Any]) -> _Link:
        return cls(row["remote_id"], row["content_hash"], row["remote_version"], row["state"],
                   row["created_at"], row["last_synced_at"], row["refused_at"])


_Chunk = tuple[list[SourceRecord], dict[str, _Link]]


@dataclass(frozen=True, slots=True)
class _Planned:
    record: OutboundRecord
    changed_at: datetime | None
    size: int
    #: The platform values the record was mapped from (JSON text), stored with its link once
    #: the provider took it: what an echo of this push looks like (see daemon.inbound).
    values: str | None = None


@dataclass(frozen=True, slots=True)
class _Hold:
    """A consent withdrawal at the provider that stands against one local record."""

    remote_id: str
    platform_opt_in: bool | None


@dataclass(frozen=True, slots=True)
class _Frozen:
    """A changed version of a linked write-once record, not sent (see :func:`decide`)."""

    local_id: str
    content_hash: str
    changed_at: datetime | None


def delete_policy(integration: Mapping[str, Any], entity: Entity, support: EntitySupport
                  ) -> DeletePolicy:
    """What a record deleted at the source does at the provider.

    Read from ``schedules[entity].on_delete`` or ``options.delete_policy[entity]``; the default
    is "leave". A policy the provider cannot do falls back to "archive", then "leave".
    """
    wanted: Any = None
    schedules = integration.get("schedules") or {}
    if isinstance(schedules, Mapping) and isinstance(schedules.get(entity.value), Mapping):
        wanted = schedules[entity.value].get("on_delete")
    options = integration.get("options") or {}
    if wanted is None and isinstance(options, Mapping):
        policies = options.get("delete_policy")
        if isinstance(policies, Mapping):
            wanted = policies.get(entity.value)
    if wanted not in ("delete", "archive", "leave"):
        return "leave"
    if wanted in support.delete_policies:
        return wanted  # type: ignore[no-any-return]
    if wanted == "delete" and "archive" in support.delete_policies:
        return "archive"
    return "leave"


def decide(link: _Link | None, digest: str, deleted: bool, policy: DeletePolicy, *,
           write_once: bool = False) -> Literal["skip", "upsert", "delete", "archive", "frozen"]:
    """What to do with one source record given what the provider has (its link).

    "frozen" is a changed record of a ``write_once`` entity that the provider already holds:
    sending it could only be refused, so it is not sent. That holds whatever the link's
    state, so a link an earlier run left failed by sending such an update is settled too.
    """
    if deleted:
        if link is None or link.remote_id is None or link.state in ("deleted", "archived"):
            return "skip"
        return "skip" if policy == "leave" else policy
    if link is None:
        return "upsert"
    if link.state == "synced" and link.content_hash == digest:
        return "skip"
    if write_once and link.remote_id is not None and link.state not in ("deleted", "archived"):
        return "frozen"
    return "upsert"


def _json_size(payload: Mapping[str, Any]) -> int:
    return len(json.dumps(payload, separators=(",", ":"), default=str))


class SyncEngine:
    """Runs syncs. One engine serves many runs; each run builds its own provider client."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        providers: Mapping[str, Provider],
        credentials: CredentialStore,
        *,
        source: SourceReader | None = None,
        http: httpx.AsyncClient | None = None,
        settings: SyncSettings | None = None,
        limiters: LimiterRegistry | None = None,
        inbound: InboundProcessor | None = None,
        retry: RetryPolicy | None = None,
        locks: AccountLocks | None = None,
    ) -> None:
        self.pool = pool
        self.providers = providers
        self.credentials = credentials
        self.source = source or SourceReader(pool)
        self.http = http
        self.settings = settings or SyncSettings()
        #: The process's provider limiters, handed to every client (None: the clients' own).
        self.limiters = limiters
        #: Processes the changes a run pulls, before it pushes (None: they wait for the
        #: next processing pass: webhook processing or ``syncd inbound apply``).
        self.inbound = inbound
        #: The process's retry policy (see :mod:`daemon.retry`); without one, the tries and
        #: cap of :class:`SyncSettings`.
        self.retry = retry or RetryPolicy(call_attempts=self.settings.max_attempts,
                                          call_cap_seconds=self.settings.max_backoff_seconds)
        #: The process's per-account locks, handed to every client (None: the clients' own).
        self.locks = locks

    # --- entry point ----------------------------------------------------------------------

    async def integration(self, venue: str, provider: str) -> asyncpg.Record:
        """The integration row, by venue id or venue name; :class:`SyncError` if none."""
        async with self.pool.acquire() as conn:
            row = None
            try:
                row = await conn.fetchrow(_Q["integration"], venue, provider)
            except (asyncpg.DataError, asyncpg.InvalidTextRepresentationError):
                row = None
            if row is None:
                row = await conn.fetchrow(_Q["integration_by_venue_name"], venue, provider)
        if row is None:
            raise SyncError(f"no {provider} integration for venue {venue}")
        return row

    async def run(
        self,
        venue: str,
        provider_name: str,
        *,
        entity: Entity | None = None,
        full: bool = False,
        dry_run: bool = False,
        progress: Progress | None = None,
        job_id: int | None = None,
        guard: WriteGuard | None = None,
        cancelled: Callable[[], bool] | None = None,
    ) -> RunReport:
        """Sync one integration now. Raises :class:`SyncError` when it cannot start."""
        integration = await self.integration(venue, provider_name)
        if not integration["enabled"]:
            raise SyncError(f"the {provider_name} integration of venue {venue} is disabled")
        try:
            provider = self.providers[provider_name]
        except KeyError:
            known = ", ".join(sorted(self.providers)) or "none"
            raise SyncError(f"unknown provider {provider_name!r} (loaded: {known})") from None
        venue_id = str(integration["venue_id"])
        try:
            source_venue = await self.source.venue(venue_id)
        except UnknownVenue as exc:
            raise SyncError(str(exc)) from None
        caps = provider.capabilities
        if entity is not None and entity not in caps.entities:
            raise SyncError(f"{provider_name} does not sync {entity.value}s")
        async with self.pool.acquire() as conn:
            mappings = await resolve_mappings(
                conn, integration, caps, provider.default_templates(),
                venue_name=source_venue.name, count_usage=not dry_run)
        entities = [e for e in _ORDER if e in caps.entities and (entity is None or e == entity)]
        report = RunReport(venue_id, provider_name, datetime.now(UTC), dry_run=dry_run)
        for m in mappings.values():
            report.healed.extend(m.healed)
        run = _Run(self, integration, provider, source_venue, report, progress=progress,
                   guard=guard, cancelled=cancelled, job_id=job_id)
        await run.execute(entities, mappings, full=full, explicit=entity is not None)
        return report


class _Run:
    """State of one run."""

    def __init__(self, engine: SyncEngine, integration: asyncpg.Record, provider: Provider,
                 venue: Venue, report: RunReport, *, progress: Progress | None,
                 guard: WriteGuard | None, cancelled: Callable[[], bool] | None,
                 job_id: int | None) -> None:
        self.engine = engine
        self.settings = engine.settings
        self.pool = engine.pool
        self.integration = integration
        self.provider = provider
        self.caps = provider.capabilities
        self.venue = venue
        self.venue_id = venue.id
        self.name = provider.name
        self.report = report
        self.progress = progress
        self.guard = guard
        self.cancelled = cancelled or (lambda: False)
        self.job_id = job_id
        self.client: ProviderClient | None = None
        self.http: httpx.AsyncClient | None = None
        self.api_calls_done = 0
        self.refreshes = 0
        self._refresh_lock = asyncio.Lock()
        self.stop = asyncio.Event()
        #: (entity, local id, error, changed at) of records the mapping failed on.
        self.unmapped: list[tuple[str, str, str, datetime | None]] = []
        limit = self.caps.rate_limit
        self.concurrency = max(1, limit.max_concurrency)
        self.rate_limit = limit

    # --- lifecycle ------------------------------------------------------------------------

    async def execute(self, entities: Sequence[Entity], mappings: Mapping[Entity,
                      ResolvedMapping], *, full: bool, explicit: bool) -> None:
        start = time.monotonic()
        report = self.report
        log_id = None
        if not report.dry_run:
            async with self.pool.acquire() as conn:
                log_id = await conn.fetchval(
                    _Q["start_log"], self.venue_id, self.name, self.job_id,
                    "sync", entities[0].value if len(entities) == 1 else None,
                    report.started_at, {"full": full})
            report.log_id = str(log_id)
        try:
            runnable = []
            for entity in entities:
                mapping = mappings[entity]
                if mapping.problems:
                    problems = "; ".join(p.message for p in mapping.problems)
                    raise SyncError(f"the {entity.value} mapping of {self.name} is unusable: "
                                    f"{problems}")
                pulls = self.caps.supports(entity, Direction.PULL)
                if not mapping.rules and not pulls:
                    if explicit:
                        raise SyncError(f"no {entity.value} mapping for {self.name}")
                    continue
                runnable.append((entity, mapping))
            if not report.dry_run:
                await self._open_client()
            reports = {entity: EntityReport(entity) for entity, _ in runnable}
            report.entities.extend(reports.values())
            # Pull first, and process what came in, then push: a provider's edit reaches the
            # platform (as its policies allow) before a push could write over it.
            for entity, _ in runnable:
                if (self.caps.supports(entity, Direction.PULL) and not report.dry_run
                        and not self.stop.is_set()):
                    await self._pull_entity(entity, reports[entity])
            if self.engine.inbound is not None and not report.dry_run \
                    and not self.stop.is_set():
                report.inbound = dict(await self.engine.inbound.process(
                    venue_id=self.venue_id, provider=self.name, guard=self.guard,
                    cancelled=self.cancelled))
            for entity, mapping in runnable:
                if self.stop.is_set():
                    break
                support = self.caps.entities[entity]
                if self.caps.supports(entity, Direction.PUSH) and mapping.rules:
                    await self._push_entity(entity, support, mapping, reports[entity],
                                            full=full)
        except SyncError as exc:
            report.outcome = RunOutcome.CONFIG
            report.error = str(exc)
        except CredentialError as exc:
            report.outcome = RunOutcome.AUTH
            report.error = str(exc)
        except _AuthFailed as exc:
            report.outcome = RunOutcome.AUTH
            report.error = str(exc) or "the provider refused the credentials"
        except LeaseLost:
            report.outcome = RunOutcome.CANCELLED
            report.error = "the job's lease was lost"
            raise
        except Exception as exc:
            log.exception("sync.run_crashed", venue_id=self.venue_id, provider=self.name)
            report.outcome = RunOutcome.RETRYABLE
            report.error = f"{type(exc).__name__}: {exc}"
        finally:
            await self._close_client()
            report.api_calls = self.api_calls_done
            report.duration_ms = int((time.monotonic() - start) * 1000)
            if not report.dry_run:
                await asyncio.shield(self._record(log_id))
        log.info("sync.run_finished", venue_id=self.venue_id, provider=self.name,
                 status=report.status, outcome=report.outcome.value, sent=report.sent,
                 unchanged=report.unchanged, frozen=report.frozen, failed=report.failed,
                 api_calls=report.api_calls, duration_ms=report.duration_ms,
                 dry_run=report.dry_run, error=report.error)

    async def _open_client(self) -> None:
        credentials = await self.engine.credentials.get(self.venue_id, self.name)
        if self.engine.http is None:
            self.http = httpx.AsyncClient(timeout=httpx.Timeout(120.0, connect=10.0),
                                          limits=httpx.Limits(max_connections=50))
        self.client = self._make_client(credentials)

    def _make_client(self, credentials: Credentials) -> ProviderClient:
        http = self.engine.http or self.http
        assert http is not None
        env = self.integration["environment"]
        base_url = (base_url_for(self.settings.base_urls, self.name, self.venue_id)
                    or (self.integration["options"] or {}).get("base_url"))
        options = {k: v for k, v in (self.integration["options"] or {}).items()
                   if k not in ("base_url", "delete_policy")}
        model = self.provider.options_model()
        try:
            opts: Any = model.model_validate(options)
        except Exception:
            opts = options
        ctx = ClientContext(venue_id=self.venue_id, credentials=credentials, options=opts,
                            http=http, base_url=base_url,
                            environment="sandbox" if env == "sandbox" else "production",
                            refresh=self._refresh_for_plugin, linked=self._linked,
                            limiters=self.engine.limiters, retry=self.engine.retry,
                            locks=self.engine.locks)
        return self.provider.client(ctx)

    async def _refresh_for_plugin(self) -> Credentials | None:
        return await self.engine.credentials.refresh(self.venue_id, self.name)

    async def _linked(self, entity: Entity, remote_ids: Sequence[str]) -> dict[str, str]:
        """{remote id: local id} of this integration's live links holding ``remote_ids``
        (what a client may not adopt for another local record)."""
        async with self.pool.acquire() as conn:
            rows = await conn.fetch(_Q["links_by_remote"], self.venue_id, self.name,
                                    entity.value, list(remote_ids))
        return {r["remote_id"]: r["local_id"] for r in rows}

    async def _refresh(self, failed_client: ProviderClient) -> bool:
        """Replace the client with one on fresh credentials; False when none can be had."""
        async with self._refresh_lock:
            if self.client is not failed_client:
                return True  # another worker refreshed already
            if self.refreshes >= 2:
                return False
            self.refreshes += 1
            fresh = await self.engine.credentials.refresh(self.venue_id, self.name)
            if fresh is None:
                return False
            old = self.client
            self.client = self._make_client(fresh)
            if old is not None:
                self.api_calls_done += old.api_calls
                await old.aclose()
            log.info("sync.credentials_refreshed", venue_id=self.venue_id, provider=self.name)
            return True

    async def _close_client(self) -> None:
        if self.client is not None:
            self.api_calls_done += self.client.api_calls
            try:
                await self.client.aclose()
            finally:
                self.client = None
        if self.http is not None:
            await self.http.aclose()
            self.http = None

    # --- push -----------------------------------------------------------------------------

    async def _state(self, entity: Entity) -> asyncpg.Record | None:
        async with self.pool.acquire() as conn:
            return await conn.fetchrow(_Q["sync_state"], self.venue_id, self.name, entity.value)

    async def _save_state(self, entity: Entity, watermark_at: datetime | None,
                          full_at: datetime | None, pull_at: datetime | None) -> None:
        """Move the entity's watermark (or check times), fenced by the job's lease: a run
        whose lease was taken over must not move a watermark past rows it never pushed."""
        async with self.pool.acquire() as conn, conn.transaction():
            if self.guard is not None:
                await self.guard(conn)
            await conn.execute(_Q["save_sync_state"], self.venue_id, self.name, entity.value,
                               watermark_at, full_at, pull_at)

    async def _push_entity(self, entity: Entity, support: EntitySupport,
                           mapping: ResolvedMapping, er: EntityReport, *, full: bool) -> None:
        state = await self._state(entity)
        clock = await self.engine.source.now()
        watermark = state["watermark_at"] if state else None
        last_full = state["last_full_at"] if state else None
        due = last_full is None or clock - last_full > timedelta(
            hours=self.settings.full_check_hours)
        er.full_check = full or watermark is None or due
        since: datetime | None = None
        if not er.full_check and watermark is not None:
            since = watermark - timedelta(seconds=self.settings.overlap_seconds)
        include: list[str] = []
        if since is not None:
            async with self.pool.acquire() as conn:
                include = [r[0] for r in await conn.fetch(
                    _Q["unsettled_ids"], self.venue_id, self.name, entity.value)]
        total: int | None = None
        if self.progress is not None:
            total = await self.engine.source.count(entity, self.venue, since=since,
                                                   include=include)
            self.progress(entity, 0, 0, total)
        policy = delete_policy(self.integration, entity, support)
        batch_size = max(1, support.batch_size)
        rate = push_rate(self.rate_limit, batch_size) * self.settings.rate_margin
        self.concurrency = push_concurrency(self.rate_limit, entity.value, rate)
        pacer = Pacer(rate, burst=min(self.rate_limit.burst, self.concurrency))
        self._pace = _Pace(rate, self.rate_limit.requests_per_second * self.settings.rate_margin,
                           self.client.api_calls if self.client is not None else 0)
        queue: asyncio.Queue[list[_Planned] | None] = asyncio.Queue(self.concurrency * 2)
        self._retryable = False
        max_changed: list[datetime | None] = [watermark]
        self._total = total

        async def ends() -> None:
            for _ in range(self.concurrency):
                await queue.put(None)

        async def produce() -> None:
            # End markers go to the workers on completion or failure, never after a cancel
            # (the workers are being cancelled too; a put on a full queue would wait forever).
            try:
                batch: list[_Planned] = []
                plans = self._plan(entity, support, mapping, policy, er, since=since,
                                   include=include, max_changed=max_changed)
                async with contextlib.aclosing(plans):
                    async for planned in plans:
                        batch.append(planned)
                        if len(batch) >= batch_size:
                            await queue.put(batch)
                            batch = []
                        if self.stop.is_set():
                            break
                if batch and not self.stop.is_set():
                    await queue.put(batch)
            except asyncio.CancelledError:
                raise
            except BaseException:
                self.stop.set()
                await ends()
                raise
            await ends()

        async def consume() -> None:
            while True:
                batch = await queue.get()
                if batch is None:
                    return
                if self.stop.is_set() or self.cancelled():
                    if self.cancelled():
                        self.report.outcome = RunOutcome.CANCELLED
                        self.stop.set()
                    continue
                if self.report.dry_run:
                    for p in batch:
                        er.sent += 1
                        er.planned.append(PlannedRecord(entity.value, p.record.local_id,
                                                        p.record.operation, p.record.remote_id,
                                                        dict(p.record.payload)))
                    continue
                await self._push_batch(entity, batch, pacer, er)
                if self.progress:
                    self.progress(entity, er.scanned, er.sent, total)

        producer = asyncio.create_task(produce())
        workers = [asyncio.create_task(consume()) for _ in range(self.concurrency)]
        try:
            await asyncio.gather(producer, *workers)
        except BaseException:
            self.stop.set()
            for t in (producer, *workers):
                t.cancel()
            await asyncio.gather(producer, *workers, return_exceptions=True)
            raise
        if self._auth_error is not None:
            raise _AuthFailed(self._auth_error)
        clean = not (self._retryable or self.stop.is_set() or self.report.dry_run)
        if self._retryable and self.report.outcome is RunOutcome.OK:
            self.report.outcome = RunOutcome.RETRYABLE
        if clean:
            # The source is read in chunks of their own snapshots: a row changed during the
            # read carries a change time after ``clock`` and may not have been read in its
            # new version, so the watermark never passes ``clock`` (the next run reads it).
            seen = max_changed[0]
            watermark_at = min(seen, clock) if seen is not None else None
            await self._save_state(entity, watermark_at, clock if er.full_check else None,
                                   None)

    _retryable = False
    _auth_error: str | None = None
    _total: int | None = None
    _pace: _Pace

    async def _plan(self, entity: Entity, support: EntitySupport, mapping: ResolvedMapping,
                    policy: DeletePolicy, er: EntityReport, *, since: datetime | None,
                    include: Sequence[str], max_changed: list[datetime | None]
                    ) -> AsyncGenerator[_Planned, None]:
        seen: set[str] | None = set() if since is None else None
        rules = compile_mapping(mapping.rules)
        chunks = self._chunks_with_links(entity, since, include)
        consent_field = CONSENT_FIELDS.get(entity.value)
        async with contextlib.aclosing(chunks):
            async for chunk, links in chunks:
                frozen: list[_Frozen] = []
                holds = await self._holds(entity, chunk) if consent_field else {}
                opt_ins: dict[str, bool] = {}
                lifted: list[str] = []
                for rec in chunk:
                    er.scanned += 1
                    if seen is not None:
                        seen.add(rec.local_id)
                    if rec.changed_at is not None and (max_changed[0] is None
                                                       or rec.changed_at > max_changed[0]):
                        max_changed[0] = rec.changed_at
                    planned = self._plan_one(rec, rules, links.get(rec.local_id), policy, er,
                                             write_once=support.write_once, frozen=frozen)
                    hold = holds.get(rec.local_id)
                    if hold is not None and consent_field is not None:
                        opt_in = get_path(rec.data, consent_field) is True
                        if hold.platform_opt_in is False and opt_in:
                            lifted.append(hold.remote_id)
                        else:
                            if hold.platform_opt_in is not opt_in:
                                opt_ins[hold.remote_id] = opt_in
                            if planned is not None:
                                planned = dataclasses.replace(planned, record=dataclasses.replace(
                                    planned.record, consent_withdrawn=True))
                    if planned is not None:
                        yield planned
                if frozen:
                    await self._settle_frozen(entity, support, frozen, er)
                if (opt_ins or lifted) and not self.report.dry_run:
                    await self._settle_consent(entity, opt_ins, lifted)
                if self.progress:
                    self.progress(entity, er.scanned, er.sent, self._total)
                if self.stop.is_set():
                    return
        if seen is not None and policy != "leave":
            missing = self._plan_missing(entity, seen, policy, er)
            async with contextlib.aclosing(missing):
                async for planned in missing:
                    yield planned

    async def _chunks_with_links(self, entity: Entity, since: datetime | None,
                                 include: Sequence[str]) -> AsyncGenerator[_Chunk, None]:
        """Source chunks with their links, read ahead: the next chunk and its links are
        fetched while the current one is mapped and hashed."""
        ahead: asyncio.Queue[_Chunk | None] = asyncio.Queue(2)
        venue_id, name, etype = self.venue_id, self.name, entity.value

        async def fetch() -> None:
            # The end marker is queued on completion or failure, never after a cancel: the
            # reader is cancelled when its consumer has gone, and a put on a full queue
            # would then wait forever.
            try:
                async for chunk in self.engine.source.read(entity, self.venue, since=since,
                                                           include=include):
                    ids = [r.local_id for r in chunk]
                    async with self.pool.acquire() as conn:
                        rows = await conn.fetch(_Q["links_for"], venue_id, name, etype, ids)
                    links = {r["local_id"]: _Link.of(r) for r in rows}
                    await ahead.put((chunk, links))
                    if self.stop.is_set():
                        break
            except asyncio.CancelledError:
                raise
            except BaseException:
                await ahead.put(None)
                raise
            await ahead.put(None)

        reader = asyncio.create_task(fetch())
        try:
            while True:
                item = await ahead.get()
                if item is None:
                    break
                yield item
            await reader  # re-raise a failure of the read
        finally:
            if not reader.done():
                reader.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await reader

    def _plan_one(self, rec: SourceRecord, rules: Callable[[Mapping[str, Any]], dict[str, Any]],
                  link: _Link | None, policy: DeletePolicy, er: EntityReport, *,
                  write_once: bool, frozen: list[_Frozen]) -> _Planned | None:
        """The record to send for ``rec``, or None. A frozen record (see :func:`decide`) is
        added to ``frozen`` instead, for :meth:`_settle_frozen` once its chunk is planned."""
        etype = rec.entity.value
        if rec.deleted:
            action = decide(link, "", True, policy)
            if action == "skip":
                if link is not None and link.state not in ("deleted", "archived"):
                    er.left += 1
                else:
                    er.unchanged += 1
                return None
            assert link is not None
            return self._removal(rec.entity, rec.local_id, link, action, rec.changed_at)
        try:
            payload = rules(rec.data)
            digest = content_hash(payload)
        except Exception as exc:
            # A rule that passed validation but cannot map this row ('n/a' through to_int):
            # this record's permanent failure, never the run's.
            self._unmapped(rec, er, f"mapping failed: {type(exc).__name__}: {exc}")
            return None
        action = decide(link, digest, False, policy, write_once=write_once)
        if action == "skip":
            er.unchanged += 1
            return None
        if action == "frozen":
            frozen.append(_Frozen(rec.local_id, digest, rec.changed_at))
            return None
        remote_id = link.remote_id if link and link.state != "deleted" else None
        if remote_id is not None and link is not None:
            key = update_key(self.venue_id, self.name, etype, rec.local_id,
                             remote_id=remote_id, remote_version=link.remote_version,
                             base_hash=link.content_hash, synced_at=link.synced_at,
                             content_hash=digest)
            attempted = None
        else:
            # A create: keyed by identity (and the gone remote record it replaces), so a
            # retry after a lost answer replays even if the record changed meanwhile.
            key = create_key(self.venue_id, self.name, etype, rec.local_id,
                             replaces=link.remote_id if link else None,
                             refused_at=link.refused_at if link else None)
            attempted = link.created_at if link and link.remote_id is None else None
        record = OutboundRecord(
            entity=rec.entity, local_id=rec.local_id, payload=payload, content_hash=digest,
            idempotency_key=key, remote_id=remote_id,
            remote_version=link.remote_version if link else None, operation="upsert",
            attempted_at=attempted)
        return _Planned(record, rec.changed_at, _json_size(payload), _platform_values(rec))

    def _unmapped(self, rec: SourceRecord, er: EntityReport, error: str) -> None:
        """Count a record the mapping failed on; its link is marked failed with the run's
        records of work (:meth:`_record`), so every run retries it until it maps."""
        er.failed += 1
        etype = rec.entity.value
        self.unmapped.append((etype, rec.local_id, error[:500], rec.changed_at))
        if len(self.report.errors) < self.settings.error_samples:
            self.report.errors.append(RecordError(etype, rec.local_id, "permanent",
                                                  error[:500]))
        log.warning("sync.record_unmapped", venue_id=self.venue_id, provider=self.name,
                    entity=etype, local_id=rec.local_id, error=error[:200])

    async def _holds(self, entity: Entity, chunk: Sequence[SourceRecord]) -> dict[str, _Hold]:
        """Standing consent withdrawals of the chunk's records, by local id."""
        async with self.pool.acquire() as conn:
            rows = await conn.fetch(_Q["consent_holds_for"], self.venue_id, self.name,
                                    entity.value, [r.local_id for r in chunk])
        return {r["local_id"]: _Hold(r["remote_id"], r["platform_opt_in"]) for r in rows}

    async def _settle_consent(self, entity: Entity, opt_ins: Mapping[str, bool],
                              lifted: Sequence[str]) -> None:
        """Record the platform's opt-in of held records as read, and lift the holds of
        people the platform opted in again after their withdrawal (false, then true)."""
        async with self.pool.acquire() as conn, conn.transaction():
            if self.guard is not None:
                await self.guard(conn)
            if opt_ins:
                await conn.execute(_Q["consent_seen"], self.venue_id, self.name, entity.value,
                                   list(opt_ins), list(opt_ins.values()))
            if lifted:
                await conn.execute(_Q["consent_lifted"], self.venue_id, self.name,
                                   entity.value, list(lifted))
        if lifted:
            log.info("sync.consent_lifted", venue_id=self.venue_id, provider=self.name,
                     entity=entity.value, count=len(lifted))

    async def _settle_frozen(self, entity: Entity, support: EntitySupport,
                             frozen: Sequence[_Frozen], er: EntityReport) -> None:
        """Settle linked write-once records whose changes are not sent.

        The link becomes synced with the new digest, so the next run finds the record
        unchanged and reports this version once rather than on every run; ``last_error``
        says it was not sent, while ``remote_id``, ``remote_version`` and ``last_synced_at``
        still describe what the provider holds. A dry run only counts.
        """
        etype = entity.value
        if not self.report.dry_run:
            note = (f"not sent: {support.remote_kind} cannot be changed at "
                    f"{self.caps.display_name} once created")
            async with self.pool.acquire() as conn, conn.transaction():
                if self.guard is not None:
                    await self.guard(conn)
                await conn.execute(
                    _Q["settle_frozen"], self.venue_id, self.name, etype,
                    [f.local_id for f in frozen], [f.content_hash for f in frozen],
                    [f.changed_at for f in frozen], note)
        er.frozen += len(frozen)
        log.info("sync.frozen", venue_id=self.venue_id, provider=self.name, entity=etype,
                 count=len(frozen), first=frozen[0].local_id, dry_run=self.report.dry_run)

    def _removal(self, entity: Entity, local_id: str, link: _Link, action: str,
                 changed_at: datetime | None) -> _Planned:
        digest = link.content_hash or ""
        op: Literal["delete", "archive"] = "delete" if action == "delete" else "archive"
        record = OutboundRecord(
            entity=entity, local_id=local_id, payload={}, content_hash=digest,
            idempotency_key=update_key(self.venue_id, self.name, entity.value, local_id,
                                       remote_id=link.remote_id,
                                       remote_version=link.remote_version,
                                       base_hash=link.content_hash,
                                       synced_at=link.synced_at, content_hash="",
                                       operation=op),
            remote_id=link.remote_id, remote_version=link.remote_version, operation=op)
        return _Planned(record, changed_at, 0)

    async def _plan_missing(self, entity: Entity, seen: set[str], policy: DeletePolicy,
                            er: EntityReport) -> AsyncGenerator[_Planned, None]:
        """Links whose source row is gone (hard-deleted): found only by a full check."""
        after = ""
        while True:
            async with self.pool.acquire() as conn:
                rows = await conn.fetch(_Q["live_links_page"], self.venue_id, self.name,
                                        entity.value, after, _LINK_PAGE)
            if not rows:
                return
            for r in rows:
                if r["local_id"] not in seen and r["remote_id"] is not None:
                    link = _Link.of(r)
                    yield self._removal(entity, r["local_id"], link, policy, None)
            after = rows[-1]["local_id"]
            if len(rows) < _LINK_PAGE:
                return

    async def _mark_attempts(self, entity: Entity, batch: Sequence[_Planned]) -> None:
        """Before a batch is sent, so that if the provider commits and the answer is never
        recorded (crash, lost lease) the next run knows: a pending link for each create
        that has none (an earlier attempt may exist: ``OutboundRecord.attempted_at``), and
        each update's link pending until its answer is stored (the provider may hold the
        new content, so a source that goes back to the linked content is sent again)."""
        fresh = [p.record.local_id for p in batch
                 if p.record.remote_id is None and p.record.operation == "upsert"
                 and p.record.attempted_at is None]
        updates = [p.record.local_id for p in batch
                   if p.record.remote_id is not None and p.record.operation == "upsert"]
        if not fresh and not updates:
            return
        async with self.pool.acquire() as conn, conn.transaction():
            if self.guard is not None:
                await self.guard(conn)
            if fresh:
                await conn.execute(_Q["mark_attempts"], self.venue_id, self.name,
                                   entity.value, fresh)
            if updates:
                await conn.execute(_Q["mark_updates"], self.venue_id, self.name,
                                   entity.value, updates)

    async def _push_batch(self, entity: Entity, batch: list[_Planned], pacer: Pacer,
                          er: EntityReport) -> None:
        pending = batch
        attempt = 0
        while pending:
            if self.stop.is_set():
                return
            attempt += 1
            if attempt == 1:
                await self._mark_attempts(entity, batch)
            client = self.client
            assert client is not None
            await pacer.acquire()
            try:
                results = await client.push(entity, [p.record for p in pending])
            except ProviderError as exc:
                if exc.kind is ErrorKind.AUTH:
                    if await self._refresh(client):
                        continue
                    self._auth_error = f"{self.name} refused the credentials: {exc}"
                    self.stop.set()
                    return
                if exc.kind is ErrorKind.PERMANENT:
                    results = [RecordResult(p.record.local_id, False,
                                            error_kind=ErrorKind.PERMANENT, error=str(exc))
                               for p in pending]
                else:
                    # The call's own tries (the HTTP layer's retries) count against the
                    # same budget as the batch's: the layers do not multiply.
                    attempt += max(exc.attempts, 1) - 1
                    if not await self._backoff(pacer, attempt, exc.retry_after, str(exc)):
                        await self._write(entity, [], [(p, str(exc)) for p in pending], er,
                                          retryable=True)
                        return
                    continue
            except httpx.HTTPError as exc:
                reason = f"{type(exc).__name__}: {exc}"
                if not await self._backoff(pacer, attempt, None, reason):
                    await self._write(entity, [], [(p, reason) for p in pending], er,
                                      retryable=True)
                    return
                continue
            except (LeaseLost, asyncio.CancelledError):
                raise
            except Exception as exc:
                # A plugin bug must not take the whole run down: this batch fails, with why.
                reason = f"the {self.name} plugin failed: {type(exc).__name__}: {exc}"
                log.error("sync.plugin_failed", venue_id=self.venue_id, provider=self.name,
                          entity=entity.value, error=reason[:300])
                results = [RecordResult(p.record.local_id, False,
                                        error_kind=ErrorKind.PERMANENT, error=reason)
                           for p in pending]
            er.batches += 1
            self._pace.observe(client.api_calls, pacer)
            if len(results) != len(pending):
                reason = (f"the {self.name} plugin returned {len(results)} results for "
                          f"{len(pending)} records")
                await self._write(entity, [], [(p, reason) for p in pending], er,
                                  retryable=False)
                return
            ok: list[tuple[_Planned, RecordResult]] = []
            failed: list[tuple[_Planned, str]] = []
            again: list[_Planned] = []
            retry_after: float | None = None
            auth = False
            for planned, result in zip(pending, results, strict=True):
                if result.ok:
                    ok.append((planned, result))
                elif result.error_kind is ErrorKind.RETRYABLE:
                    again.append(planned)
                    retry_after = max(retry_after or 0.0, result.retry_after or 0.0) or None
                elif result.error_kind is ErrorKind.AUTH:
                    auth = True
                    again.append(planned)
                else:
                    failed.append((planned, result.error or "rejected by the provider"))
            await self._write(entity, ok, failed, er, retryable=False)
            pending = again
            if not pending:
                return
            if auth:
                if await self._refresh(client):
                    continue
                self._auth_error = f"{self.name} refused the credentials"
                self.stop.set()
                return
            if not await self._backoff(pacer, attempt, retry_after, "records retryable"):
                await self._write(entity, [], [(p, "retryable error, retries exhausted")
                                               for p in pending], er, retryable=True)
                return

    async def _backoff(self, pacer: Pacer, attempt: int, retry_after: float | None,
                       reason: str) -> bool:
        """Wait before another try; False when the run stops instead: the tries of the retry
        policy are used up, or the provider asks for a wait longer than its cap. The job is
        then re-queued to run after ``retry_after``, holding no worker slot, lease or
        connection meanwhile."""
        policy = self.engine.retry
        too_long = retry_after is not None and retry_after > policy.call_cap_seconds
        if attempt >= policy.call_attempts or too_long:
            self._retryable = True
            wait = retry_after or self.rate_limit.default_retry_after
            self.report.retry_after = max(self.report.retry_after or 0.0, wait)
            self.report.error = (f"{reason} (the provider asked to wait {wait:g} s; the job "
                                 "runs again then)") if too_long else reason
            if too_long:
                log.info("sync.deferred", venue_id=self.venue_id, provider=self.name,
                         retry_after_s=wait, reason=reason)
            self.stop.set()
            return False
        base = retry_after if retry_after is not None else policy.call_ceiling(attempt)
        wait = base + random.uniform(0, base * 0.1)
        pacer.pause(wait)
        log.info("sync.backoff", venue_id=self.venue_id, provider=self.name, attempt=attempt,
                 wait_s=round(wait, 3), reason=reason)
        return True

    async def _write(self, entity: Entity, ok: Sequence[tuple[_Planned, RecordResult]],
                     failed: Sequence[tuple[_Planned, str]], er: EntityReport, *,
                     retryable: bool) -> None:
        """Record a batch's outcomes in one transaction (with the caller's lease check).

        A remote id already linked to another local record (the links' unique index) is
        settled by :meth:`_split_conflicts` and the transaction tried again; what the report
        counts is what was stored.
        """
        if not ok and not failed:
            return
        etype = entity.value
        good: list[tuple[_Planned, RecordResult]] = list(ok)
        bad: list[tuple[_Planned, str]] = list(failed)
        stale: dict[str, str] = {}
        async with self.pool.acquire() as conn:
            for _ in range(_WRITE_TRIES):
                try:
                    await self._store(conn, etype, good, bad, stale, retryable=retryable)
                    break
                except asyncpg.UniqueViolationError:
                    good, bad, stale = await self._split_conflicts(conn, etype, good, bad,
                                                                   stale)
            else:
                # Links kept changing under this batch: store every outcome as a failure
                # (that never conflicts), so the records are sent again next run.
                reason = "its outcome could not be stored: its remote record's link kept " \
                         "changing (another run at the same time?)"
                bad += [(p, reason) for p, _ in good]
                good, stale = [], {}
                await self._store(conn, etype, good, bad, stale, retryable=True)
        if stale:
            log.warning("sync.stale_links_released", venue_id=self.venue_id,
                        provider=self.name, entity=etype, count=len(stale),
                        first=next(iter(stale)))
        kind = "retryable" if retryable else "permanent"
        for planned, result in good:
            er.sent += 1
            er.bytes_sent += planned.size
            op = planned.record.operation
            if op == "delete":
                er.deleted += 1
            elif op == "archive":
                er.archived += 1
            elif planned.record.remote_id is None and result.action != "updated":
                er.created += 1
            else:
                er.updated += 1
        for planned, error in bad:
            er.sent += 1
            er.failed += 1
            if len(self.report.errors) < self.settings.error_samples:
                self.report.errors.append(RecordError(etype, planned.record.local_id, kind,
                                                      error[:500]))
        if bad:
            log.warning("sync.records_failed", venue_id=self.venue_id, provider=self.name,
                        entity=etype, count=len(bad), kind=kind, first=bad[0][1][:200])

    async def _store(self, conn: asyncpg.Connection, etype: str,
                     good: Sequence[tuple[_Planned, RecordResult]],
                     bad: Sequence[tuple[_Planned, str]], stale: Mapping[str, str], *,
                     retryable: bool) -> None:
        async with conn.transaction():
            if self.guard is not None:
                await self.guard(conn)
            if stale:
                await conn.execute(
                    _Q["release_links"], self.venue_id, self.name, etype, list(stale),
                    "its remote record was gone and the provider gave its id to a new record "
                    "(the remote side was reset?): sent again as a new record")
            if good:
                await conn.execute(
                    _Q["write_links"], self.venue_id, self.name, etype,
                    [p.record.local_id for p, _ in good],
                    [r.remote_id for _, r in good],
                    [_stored_hash(p) for p, _ in good],
                    [r.remote_version for _, r in good],
                    [_state_after(p) for p, _ in good],
                    [p.changed_at for p, _ in good],
                    [p.values for p, _ in good])
            if bad:
                await conn.execute(
                    _Q["write_failures"], self.venue_id, self.name, etype,
                    [p.record.local_id for p, _ in bad], [e for _, e in bad],
                    [p.changed_at for p, _ in bad], not retryable)

    async def _split_conflicts(self, conn: asyncpg.Connection, etype: str,
                               good: list[tuple[_Planned, RecordResult]],
                               bad: list[tuple[_Planned, str]], stale: Mapping[str, str]
                               ) -> tuple[list[tuple[_Planned, RecordResult]],
                                          list[tuple[_Planned, str]], dict[str, str]]:
        """Settle results whose remote id another local record's link holds.

        The provider answered a create with that id: it has just made that remote record,
        so the other link is stale (its remote record is gone and the id was given again,
        as after a sandbox reset) and is released. Otherwise (an adopt or an update) the
        conflict is real: this record fails and the other keeps its link.
        """
        keep: list[tuple[_Planned, RecordResult]] = []
        released = dict(stale)
        ids = [r.remote_id or p.record.remote_id for p, r in good]
        rows = await conn.fetch(_Q["links_by_remote"], self.venue_id, self.name, etype,
                                [i for i in ids if i is not None])
        owners = {r["remote_id"]: r["local_id"] for r in rows}
        taken: dict[str, str] = {}
        for (planned, result), rid in zip(good, ids, strict=True):
            local_id = planned.record.local_id
            if rid is None:
                keep.append((planned, result))
                continue
            owner = taken.get(rid) or owners.get(rid)
            if owner is not None and owner != local_id and rid not in taken and \
                    rid not in released and result.action == "created":
                released[rid] = owner
                owner = None
            if owner is not None and owner != local_id and rid not in released:
                bad.append((planned, f"remote record {rid} is already linked to local "
                                     f"record {owner}"))
            elif rid in taken:
                bad.append((planned, f"remote record {rid} is already linked to local "
                                     f"record {taken[rid]}"))
            else:
                taken[rid] = local_id
                keep.append((planned, result))
        return keep, bad, released

    # --- pull -----------------------------------------------------------------------------

    async def _pull_entity(self, entity: Entity, er: EntityReport) -> None:
        state = await self._state(entity)
        since = state["last_pull_at"] if state else None
        started = datetime.now(UTC)
        try:
            while True:
                client = self.client
                assert client is not None
                try:
                    await self._pull_changes(client, entity, since, er)
                    break
                except ProviderError as exc:
                    # Pulls run first: a stale token is refreshed here as a push would.
                    if exc.kind is not ErrorKind.AUTH or not await self._refresh(client):
                        raise
        except ProviderError as exc:
            if exc.kind is ErrorKind.AUTH:
                raise _AuthFailed(f"{self.name} refused the credentials: {exc}") from None
            log.warning("sync.pull_failed", venue_id=self.venue_id, provider=self.name,
                        entity=entity.value, error=str(exc), kind=exc.kind.value)
            if exc.kind is ErrorKind.RETRYABLE and self.report.outcome is RunOutcome.OK:
                self.report.outcome = RunOutcome.RETRYABLE
                self.report.retry_after = exc.retry_after
            self.report.error = f"pull of {entity.value}s failed: {exc}"
            return
        await self._save_state(entity, None, None, started)

    async def _pull_changes(self, client: ProviderClient, entity: Entity,
                            since: datetime | None, er: EntityReport) -> None:
        batch: list[InboundChange] = []
        async for change in client.pull(entity, since):
            batch.append(change)
            if len(batch) >= 500:
                er.pulled += await self._store_inbound(entity, batch)
                batch = []
        if batch:
            er.pulled += await self._store_inbound(entity, batch)

    async def _store_inbound(self, entity: Entity, changes: Sequence[InboundChange]) -> int:
        async with self.pool.acquire() as conn, conn.transaction():
            if self.guard is not None:
                await self.guard(conn)
            status = await conn.execute(
                _Q["insert_inbound"], self.venue_id, self.name,
                (changes[0].entity or entity).value,
                [c.remote_id for c in changes], [c.change for c in changes],
                [json.dumps(dict(c.payload), default=str) for c in changes],
                [c.dedupe_key for c in changes], [c.occurred_at for c in changes],
                [None if c.fields is None else json.dumps(dict(c.fields), default=str)
                 for c in changes])
        return int(status.split()[-1])

    # --- records of work ------------------------------------------------------------------

    async def _record(self, log_id: Any) -> None:
        report = self.report
        details: dict[str, Any] = {
            "entities": {e.entity.value: e.as_json() for e in report.entities},
            "outcome": report.outcome.value,
            "healed": [c.describe() for c in report.healed],
        }
        if report.inbound:
            details["inbound"] = report.inbound
        if report.error:
            details["error"] = report.error
        ok = report.status in ("completed", "partial")
        async with self.pool.acquire() as conn, conn.transaction():
            # Fenced like every other write of shared state: a run whose lease was taken over
            # still closes its own log row and counts the calls it made (both facts about
            # this run alone), but leaves links and the integration's health to the run that
            # holds the lease now.
            fenced = True
            if self.guard is not None:
                try:
                    async with conn.transaction():
                        await self.guard(conn)
                except LeaseLost:
                    fenced = False
            if fenced:
                for etype in sorted({u[0] for u in self.unmapped}):
                    rows = [u for u in self.unmapped if u[0] == etype]
                    await conn.execute(
                        _Q["write_failures"], self.venue_id, self.name, etype,
                        [u[1] for u in rows], [u[2] for u in rows], [u[3] for u in rows],
                        False)  # never sent: the provider refused nothing
            await conn.execute(
                _Q["finish_log"], log_id, report.status,
                sum(e.scanned for e in report.entities), report.succeeded, report.failed,
                report.unchanged + report.frozen, report.duration_ms, report.api_calls,
                report.bytes_sent, details, [e.as_json() for e in report.errors])
            await conn.execute(_Q["add_cost"], self.venue_id, self.name, report.api_calls,
                               report.bytes_sent, report.succeeded)
            if not fenced:
                return
            if report.outcome is RunOutcome.AUTH:
                await conn.execute(_Q["integration_error"], self.venue_id, self.name,
                                   report.error)
            elif report.outcome is not RunOutcome.CANCELLED:
                error = report.error or (
                    f"{report.failed} records failed" if report.failed else None)
                await conn.execute(_Q["integration_ran"], self.venue_id, self.name, ok, error)


class _Pace:
    """Learns how many HTTP calls one push makes and keeps pushes x calls inside the
    provider's request rate (a Stripe create that first looks the e-mail up makes two)."""

    def __init__(self, push_rate: float, request_rate: float, base: int) -> None:
        self.push_rate = push_rate
        self.request_rate = request_rate
        self.pushes = 0
        self.base = base

    def observe(self, client_calls: int, pacer: Pacer) -> None:
        """After a push: ``client_calls`` is the client's running total of HTTP calls.
        Totals, not per-push differences, since pushes overlap."""
        self.pushes += 1
        if client_calls < self.base:  # a new client after a credentials refresh
            self.base, self.pushes = 0, 1
        per_push = max(1.0, (client_calls - self.base) / self.pushes)
        pacer.set_rate(min(self.push_rate, self.request_rate / per_push))


def _stored_hash(planned: _Planned) -> str | None:
    return planned.record.content_hash if planned.record.operation == "upsert" else (
        planned.record.content_hash or None)


def _state_after(planned: _Planned) -> str:
    return {"delete": "deleted", "archive": "archived"}.get(planned.record.operation, "synced")


def _plain(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, tuple):
        return list(value)
    return value


def _platform_values(rec: SourceRecord) -> str | None:
    """The record's writable platform fields as JSON text (see daemon.inbound.fields)."""
    fields = PLATFORM_FIELDS.get(rec.entity.value)
    if not fields:
        return None
    values = {path: _plain(get_path(rec.data, path)) for path in fields}
    return json.dumps(values, separators=(",", ":"), default=str)
