"""Benchmark: the sync engine against each bundled provider's emulator, and a naive baseline.

One venue with 10,000 customers, 2,000 products and 20,000 transactions (--quick: 1/20),
against each emulator with 30 ms latency per request and the provider's real limits. Each
emulator (``daemon.testing.emulator.EmulatorServer``) runs in a process of its own.

For each provider, in the same run:

initial      syncd's initial sync, entity by entity. Where a provider allows only a few records
             a second (batch size 1 at 10-25 requests/s) a full initial sync takes half an
             hour, so each entity runs for at most --budget seconds and the figure is the
             steady rate over that window (records linked / seconds). 429s seen by the emulator
             during the window are counted.
naive        what the replaced service did: one request per record, in sequence, no links, for
             at most --naive-budget seconds per entity.
ceiling      what the provider's limits allow: per entity, batch size x allowed push calls per
             second; for the provider, total records / the sum of each entity's minimum time.
resync       the links the initial sync did not reach are primed with the hashes a finished
             initial sync would leave (records synced for real keep their real remote ids);
             then a re-sync with no change (incremental, then a full check) and a re-sync with
             1 % of every entity's rows changed (rows that really reached the emulator).
             A transaction embeds its customer's and event's fields when its mapping reads
             them, so changing 1 % of customers and events also changes their transactions'
             records: resync_changed_records counts every record whose content changed.
             resync_sent_fraction = records sent / records in the venue;
             resync_scan_records_per_s = records in the venue / seconds of the no-change
             incremental re-sync; full_scan_records_per_s likewise for a full check (every
             row read, mapped, hashed and compared).

Goals (issue 6): where the provider is the bottleneck (ceiling under 5,000 records/s), at
least 90 % of the ceiling with no 429; elsewhere at least 5,000 records/s; a 1 %-changed
re-sync sends at most 1 % of records (plus a constant); unchanged rows scan at 20,000
records/s or more. Postgres is found the way the tests find it. The last line printed is a
JSON object with a ``providers`` key.

replicas     three ``syncd worker`` processes on one database sync 30 venues whose
             integrations share one provider account, against one emulator process that
             enforces the provider's limits across every caller (connections in flight
             included). After a warm-up, for --replicas-seconds: requests answered, 429s per
             1,000 requests, and ``limit_fraction``, the share of the account's declared limit
             used: the largest of requests/s over the binding rate (the request rate or an
             unscoped window quota), scoped calls (batch) over their window quota, and mean
             connections in flight over the concurrency limit where the emulator enforces one.
             Goal (issue 18): no 429 and at least 90 % of the limit. ``shared_limiter`` is the
             cost of the Postgres limiter per request (ms and round trips), measured in-process
             on an account with a high limit. ``--replicas-only`` runs just this part.
"""

from __future__ import annotations

import sys

# Run as a script, Python puts bench/ first on sys.path, where bench/queue.py would shadow the
# standard library's queue module; the benchmark imports nothing from bench/.
if sys.path and sys.path[0].rstrip("/").endswith("bench"):
    del sys.path[0]

import argparse
import asyncio
import contextlib
import json
import multiprocessing
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import asyncpg
import httpx

from daemon.credentials import EmulatorTokens, ReferenceCredentialStore
from daemon.db import init_connection
from daemon.logs import configure_logging
from daemon.mapping import apply_mapping, content_hash
from daemon.plugins import load_plugins
from daemon.provider import (
    ClientContext,
    Direction,
    EmulatorSettings,
    Entity,
    OutboundRecord,
    Provider,
    ProviderError,
    RateLimit,
)
from daemon.queue import enqueue
from daemon.ratelimit import LimiterRegistry, extra_windows
from daemon.ratelimit_shared import PostgresLimits, SharedLimitSettings
from daemon.source import SourceReader
from daemon.sync import SyncEngine, SyncSettings
from daemon.sync.mappings import resolve_mappings
from daemon.sync.pacing import push_rate
from daemon.testing.emulator import EmulatorServer
from daemon.testing.platform import create_platform_schema, seed_venue
from daemon.testing.postgres import find_server

ORDER = (Entity.PRODUCT, Entity.CUSTOMER, Entity.TRANSACTION)
WRITES = ("POST", "PUT", "PATCH", "DELETE")
#: POSTs that only read (QuickBooks queries, Square and Stripe searches).
READ_PATHS = ("/query", "/search", "/cdc", "/bulk-retrieve")


def is_write(request: Mapping[str, Any]) -> bool:
    path = str(request.get("path", ""))
    return request.get("method") in WRITES and not any(p in path for p in READ_PATHS)
SCAN_GOAL = 20_000.0
FAST_GOAL = 5_000.0


@dataclass
class Sizes:
    customers: int
    events: int
    orders: int

    def of(self, entity: Entity) -> int:
        return {Entity.PRODUCT: self.events, Entity.CUSTOMER: self.customers,
                Entity.TRANSACTION: self.orders}[entity]


@dataclass
class Result:
    provider: str
    entities: dict[str, dict[str, Any]] = field(default_factory=dict)
    summary: dict[str, Any] = field(default_factory=dict)


def _supported(provider: Provider) -> list[Entity]:
    caps = provider.capabilities
    return [e for e in ORDER if e in caps.entities and caps.supports(e, Direction.PUSH)]


def _ceiling(provider: Provider, entity: Entity) -> float:
    support = provider.capabilities.entities[entity]
    return max(1, support.batch_size) * push_rate(provider.capabilities.rate_limit,
                                                  support.batch_size)


def _options(provider: Provider, account: Mapping[str, str]) -> dict[str, Any]:
    """Options an emulator account needs (Mailchimp: its list and store)."""
    fields = provider.options_model().model_fields
    out: dict[str, Any] = {}
    for name in fields:
        if name in account:
            out[name] = account[name]
    return out


def _serve_emulator(provider_name: str, latency: float, pipe: Connection) -> None:
    """Child process: serve one provider's emulator until the parent says stop."""

    async def serve() -> None:
        provider = load_plugins().provider(provider_name)
        settings = EmulatorSettings(latency=latency, enforce_rate_limits=True, seed=1)
        async with EmulatorServer(provider.emulator(settings)) as server:
            pipe.send(server.url)
            await asyncio.get_running_loop().run_in_executor(None, pipe.recv)

    configure_logging("error", "console", sys.stderr)
    asyncio.run(serve())


class EmulatorProcess:
    """An emulator (``EmulatorServer``) in a process of its own, so that its work (parsing
    batches, building records) is not counted against syncd's, as a real provider's is not."""

    def __init__(self, provider: str, latency: float) -> None:
        ctx = multiprocessing.get_context("spawn")
        self._pipe, child = ctx.Pipe()
        self._proc = ctx.Process(target=_serve_emulator, args=(provider, latency, child),
                                 daemon=True)
        self.url = ""

    async def __aenter__(self) -> EmulatorProcess:
        self._proc.start()
        ready = await asyncio.get_running_loop().run_in_executor(None, self._pipe.poll, 60)
        if not ready:
            self._proc.terminate()
            raise RuntimeError("the emulator process did not start")
        self.url = self._pipe.recv()
        return self

    async def __aexit__(self, *exc: object) -> None:
        with contextlib.suppress(OSError):
            self._pipe.send("stop")
        await asyncio.get_running_loop().run_in_executor(None, self._proc.join, 10)
        if self._proc.is_alive():
            self._proc.terminate()


class Bench:
    def __init__(self, pool: asyncpg.Pool, venue: uuid.UUID, sizes: Sizes, args: Any) -> None:
        self.pool = pool
        self.venue = venue
        self.sizes = sizes
        self.args = args
        self.reader = SourceReader(pool)

    async def emulator_requests(self, http: httpx.AsyncClient, url: str) -> list[dict[str, Any]]:
        response = await http.get(url + "/_emulator/requests")
        data = response.json()
        return data if isinstance(data, list) else data.get("requests", [])

    async def run_provider(self, provider: Provider) -> Result:
        name = provider.name
        result = Result(name)
        entities = _supported(provider)
        async with EmulatorProcess(name, self.args.latency) as server, \
                httpx.AsyncClient(timeout=120) as http:
            url = server.url
            creds = (await http.get(url + "/_emulator/credentials")).json()
            account = {str(k): str(v) for k, v in (creds.get("account") or {}).items()}
            await self.pool.execute("DELETE FROM integration_configs WHERE provider = $1", name)
            await self.pool.execute(
                "INSERT INTO integration_configs (venue_id, provider, venue_name, status, "
                "credentials, options) VALUES ($1, $2, 'Bench Comedy Club', 'connected', $3, "
                "$4)", self.venue, name, {"access_token": "oauth"},
                _options(provider, account))
            base_urls = {name: url}
            engine = SyncEngine(self.pool, {name: provider},
                                ReferenceCredentialStore(self.pool, EmulatorTokens(base_urls)),
                                source=self.reader, http=http,
                                settings=SyncSettings(base_urls=base_urls, overlap_seconds=0))
            # initial (syncd), entity by entity, each within the budget
            for entity in entities:
                before = len(await self.emulator_requests(http, url))
                deadline = time.monotonic() + self.args.budget
                start = time.monotonic()
                report = await engine.run(str(self.venue), name, entity=entity,
                                          cancelled=lambda d=deadline: time.monotonic() > d)
                elapsed = time.monotonic() - start
                reqs = (await self.emulator_requests(http, url))[before:]
                done = sum(e.succeeded for e in report.entities)
                n = self.sizes.of(entity)
                ceiling = _ceiling(provider, entity)
                rate = done / elapsed if elapsed else 0.0
                result.entities[entity.value] = {
                    "records": n, "initial_synced": done, "initial_seconds": round(elapsed, 2),
                    "initial_records_per_s": round(rate, 1),
                    "initial_complete": done == n, "initial_outcome": report.outcome.value,
                    "initial_error": report.error,
                    "initial_failed": sum(e.failed for e in report.entities),
                    "initial_api_calls": report.api_calls,
                    "initial_429s": sum(1 for r in reqs if r.get("status") == 429),
                    "ceiling_records_per_s": round(ceiling, 1),
                    # Calls the plugin makes per push (lookups before a create, a payment
                    # after an order) divide what the request limit allows.
                    "api_calls_per_push": round(report.api_calls / max(1, sum(
                        e.batches for e in report.entities)), 2),
                    # The share of the request limit used: records/s x calls per record.
                    "effective_ceiling_fraction": round(
                        rate * report.api_calls / max(1, done) / (ceiling / max(
                            1, provider.capabilities.entities[entity].batch_size)), 3)
                    if done and ceiling else None,
                    "bottleneck": ceiling < FAST_GOAL,
                    "ceiling_fraction": round(rate / ceiling, 3) if ceiling else None,
                }
                print(f"  {name} {entity.value}: {done}/{n} in {elapsed:.1f}s = {rate:,.0f}/s "
                      f"(ceiling {ceiling:,.0f}/s, 429s "
                      f"{result.entities[entity.value]['initial_429s']})", file=sys.stderr)
            # naive baseline
            for entity in entities:
                done, elapsed = await self.naive(provider, entity, http, url=url, creds=creds,
                                                account=account)
                result.entities[entity.value]["naive_records_per_s"] = round(
                    done / elapsed if elapsed else 0.0, 1)
            # prime the links the budget did not reach, then re-sync
            primed = await self.prime(provider, entities)
            resync = await self.resync(engine, provider, entities, http, url)
        n_total = sum(self.sizes.of(e) for e in entities)
        # A provider's figure is what a whole initial sync would take at each entity's rate:
        # records / the sum of each entity's time (records / its rate).
        min_time = sum(self.sizes.of(e) / _ceiling(provider, e) for e in entities)
        ceiling_total = n_total / min_time if min_time else 0.0
        projected = sum(self.sizes.of(e) / max(result.entities[e.value]
                                                ["initial_records_per_s"], 1e-9)
                        for e in entities)
        initial_rate = n_total / projected if projected else 0.0
        naive_time_total = sum(self.sizes.of(e) / max(result.entities[e.value]
                                                       ["naive_records_per_s"], 1e-9)
                               for e in entities)
        result.summary = {
            "entities": [e.value for e in entities],
            "records": n_total,
            "initial_records_per_s": round(initial_rate, 1),
            "naive_records_per_s": round(n_total / naive_time_total, 1)
            if naive_time_total else 0.0,
            "ceiling_records_per_s": round(ceiling_total, 1),
            "initial_ceiling_fraction": round(initial_rate / ceiling_total, 3)
            if ceiling_total else None,
            "initial_429s": sum(e["initial_429s"] for e in result.entities.values()),
            "primed_links": primed,
            **resync,
        }
        result.summary["goals"] = self.goals(result)
        return result

    async def naive(self, provider: Provider, entity: Entity, http: httpx.AsyncClient, *,
                    url: str, creds: Mapping[str, Any], account: Mapping[str, str]
                    ) -> tuple[int, float]:
        """One request per record, in sequence, no links, for at most the naive budget."""
        from daemon.provider import Credentials

        async with self.pool.acquire() as conn:
            integration = await conn.fetchrow(
                "SELECT * FROM integration_configs WHERE venue_id = $1 AND provider = $2",
                self.venue, provider.name)
            mappings = await resolve_mappings(conn, integration, provider.capabilities,
                                              provider.default_templates(), count_usage=False)
        rules = mappings[entity].rules
        credentials = Credentials(access_token=creds.get("access_token"),
                                  api_key=creds.get("api_key"), account=dict(account))
        model = provider.options_model()
        options = model.model_validate(integration["options"] or {})
        client = provider.client(ClientContext(str(self.venue), credentials, options, http,
                                               base_url=url))
        venue = await self.reader.venue(str(self.venue))
        done = 0
        start = time.monotonic()
        deadline = start + self.args.naive_budget
        try:
            async for chunk in self.reader.read(entity, venue, chunk_size=200):
                for rec in chunk:
                    if time.monotonic() > deadline:
                        raise StopAsyncIteration
                    payload = apply_mapping(rules, rec.data)
                    record = OutboundRecord(entity, rec.local_id, payload,
                                            content_hash(payload), uuid.uuid4().hex)
                    try:
                        results = await client.push(entity, [record])
                    except ProviderError:
                        continue
                    done += sum(1 for r in results if r.ok)
        except StopAsyncIteration:
            pass
        finally:
            await client.aclose()
        return done, time.monotonic() - start

    async def prime(self, provider: Provider, entities: list[Entity]) -> int:
        """Links a finished initial sync would have left, for rows the budget did not reach."""
        name = provider.name
        async with self.pool.acquire() as conn:
            integration = await conn.fetchrow(
                "SELECT * FROM integration_configs WHERE venue_id = $1 AND provider = $2",
                self.venue, name)
            mappings = await resolve_mappings(conn, integration, provider.capabilities,
                                              provider.default_templates(), count_usage=False)
        venue = await self.reader.venue(str(self.venue))
        primed = 0
        for entity in entities:
            rules = mappings[entity].rules
            watermark = None
            async for chunk in self.reader.read(entity, venue):
                ids, hashes, changed = [], [], []
                for rec in chunk:
                    ids.append(rec.local_id)
                    hashes.append(content_hash(apply_mapping(rules, rec.data)))
                    changed.append(rec.changed_at)
                    if rec.changed_at and (watermark is None or rec.changed_at > watermark):
                        watermark = rec.changed_at
                status = await self.pool.execute(
                    "INSERT INTO entity_links (venue_id, provider, entity_type, local_id, "
                    "remote_id, content_hash, state, last_synced_at, source_updated_at) "
                    "SELECT $1, $2, $3, u.id, 'primed-' || u.id, u.h, 'synced', now(), u.c "
                    "FROM unnest($4::text[], $5::text[], $6::timestamptz[]) AS u(id, h, c) "
                    "ON CONFLICT DO NOTHING",
                    self.venue, name, entity.value, ids, hashes, changed)
                primed += int(status.split()[-1])
            await self.pool.execute(
                "INSERT INTO sync_state (venue_id, provider, entity_type, watermark_at, "
                "last_full_at) VALUES ($1, $2, $3, $4, now()) ON CONFLICT (venue_id, provider, "
                "entity_type) DO UPDATE SET watermark_at = $4, last_full_at = now()",
                self.venue, name, entity.value, watermark)
        return primed

    async def resync(self, engine: SyncEngine, provider: Provider, entities: list[Entity],
                     http: httpx.AsyncClient, url: str) -> dict[str, Any]:
        name = provider.name
        n_total = sum(self.sizes.of(e) for e in entities)
        out: dict[str, Any] = {}
        # No change, incremental: nothing read but what changed, nothing sent.
        before = len(await self.emulator_requests(http, url))
        start = time.monotonic()
        report = await engine.run(str(self.venue), name)
        elapsed = time.monotonic() - start
        writes = [r for r in (await self.emulator_requests(http, url))[before:]
                  if is_write(r)]
        out["resync_nochange_sent"] = report.sent
        out["resync_nochange_write_calls"] = len(writes)
        out["resync_scan_records_per_s"] = round(n_total / elapsed, 1)
        # No change, full check: every row read, mapped, hashed, compared.
        start = time.monotonic()
        report = await engine.run(str(self.venue), name, full=True)
        elapsed = time.monotonic() - start
        out["full_scan_records_per_s"] = round(n_total / elapsed, 1)
        out["full_scan_sent"] = report.sent
        # 1 % changed, preferring rows that really reached the emulator.
        changed_ids: dict[Entity, list[str]] = {}
        for entity in entities:
            count = max(1, self.sizes.of(entity) // 100)
            changed_ids[entity] = await self.change(name, entity, count)
        changed = sum(len(v) for v in changed_ids.values())
        expected = changed + await self.dependents(provider, entities, changed_ids)
        before = len(await self.emulator_requests(http, url))
        start = time.monotonic()
        report = await engine.run(str(self.venue), name)
        elapsed = time.monotonic() - start
        reqs = (await self.emulator_requests(http, url))[before:]
        out["resync_changed_rows"] = changed
        out["resync_changed_records"] = expected
        out["resync_changed_record_fraction"] = round(expected / n_total, 4)
        out["resync_sent"] = report.sent
        out["resync_sent_fraction"] = round(report.sent / n_total, 4)
        out["resync_api_calls"] = report.api_calls
        out["resync_write_calls"] = sum(1 for r in reqs if is_write(r))
        out["resync_seconds"] = round(elapsed, 2)
        out["resync_records_per_s"] = round(report.sent / elapsed, 1) if elapsed else None
        out["resync_failed"] = report.failed
        out["resync_429s"] = sum(1 for r in reqs if r.get("status") == 429)
        out["naive_resync_api_calls"] = n_total  # the naive sync sends every record again
        return out

    async def dependents(self, provider: Provider, entities: list[Entity],
                         changed: Mapping[Entity, list[str]]) -> int:
        """Transactions whose mapped record changed because their customer or event did
        (a transaction embeds customer and event fields when its mapping reads them)."""
        if Entity.TRANSACTION not in entities:
            return 0
        async with self.pool.acquire() as conn:
            integration = await conn.fetchrow(
                "SELECT * FROM integration_configs WHERE venue_id = $1 AND provider = $2",
                self.venue, provider.name)
            mappings = await resolve_mappings(conn, integration, provider.capabilities,
                                              provider.default_templates(), count_usage=False)
        sources = {r.source or "" for r in mappings[Entity.TRANSACTION].rules.values()}
        customers = (changed.get(Entity.CUSTOMER, [])
                     if any(x.startswith("customer.") for x in sources) else [])
        events = (changed.get(Entity.PRODUCT, [])
                  if any(x.startswith("event.") for x in sources) else [])
        value: int = await self.pool.fetchval(
            "SELECT count(*) FROM orders WHERE venue_id = $1 AND NOT (id::text = ANY($2)) "
            "AND (customer_id::text = ANY($3) OR event_id::text = ANY($4))",
            self.venue, changed.get(Entity.TRANSACTION, []), customers, events)
        return value

    async def change(self, provider: str, entity: Entity, count: int) -> list[str]:
        table, column, value = {
            Entity.PRODUCT: ("events", "name", "name || ' *'"),
            Entity.CUSTOMER: ("customers", "last_name", "last_name || ' *'"),
            Entity.TRANSACTION: ("orders", "status",
                                 "CASE WHEN status = 'paid' THEN 'refunded' ELSE 'paid' END"),
        }[entity]
        rows = await self.pool.fetch(
            f"UPDATE {table} SET {column} = {value}, updated_at = now() WHERE id::text IN ("
            "SELECT local_id FROM entity_links WHERE venue_id = $1 AND provider = $2 "
            "AND entity_type = $3 ORDER BY remote_id LIKE 'primed-%', local_id LIMIT $4) "
            "RETURNING id::text",
            self.venue, provider, entity.value, count)
        return [r[0] for r in rows]

    def goals(self, result: Result) -> dict[str, Any]:
        s = result.summary
        speed_ok = True
        for e in result.entities.values():
            if e["bottleneck"]:
                e["goal_met"] = (e["ceiling_fraction"] or 0) >= 0.9 and e["initial_429s"] == 0
            else:
                e["goal_met"] = e["initial_records_per_s"] >= FAST_GOAL
            speed_ok = speed_ok and e["goal_met"]
        constant = 3 * len(s["entities"])
        return {
            "initial": speed_ok,
            "resync_sent_at_most_1pct": s["resync_sent"] <= s["records"] // 100 + constant,
            "resync_sent_only_changed": s["resync_sent"] <= s["resync_changed_records"]
            + constant,
            "resync_nochange_zero_writes": s["resync_nochange_write_calls"] == 0,
            "scan": s["resync_scan_records_per_s"] >= SCAN_GOAL,
        }


# --- replicas ------------------------------------------------------------------------------

REPLICA_VENUES = 30
REPLICA_WORKERS = 3
ROOT = Path(__file__).resolve().parents[1]
SYNCD = str(Path(sys.executable).parent / "syncd")


def _binding_rate(limit: RateLimit) -> tuple[float, str]:
    """Requests a second every call counts against: the rate or an unscoped window quota."""
    rate, name = limit.requests_per_second, "requests_per_second"
    for key, window in extra_windows(limit.extra):
        if window.scope is None and window.limit / window.period < rate:
            rate, name = window.limit / window.period, key
    return rate, name


class ReplicaWorkers:
    """``syncd worker`` processes on the bench database, each logging to a file."""

    def __init__(self, db_url: str, provider: str, emulator_url: str, logdir: str) -> None:
        self.db_url = db_url
        self.provider = provider
        self.emulator_url = emulator_url
        self.logdir = logdir
        self.procs: list[Any] = []

    def __enter__(self) -> ReplicaWorkers:
        import os
        import subprocess

        env = {k: v for k, v in os.environ.items()
               if not k.startswith("SYNCD_") and k != "DATABASE_URL"}
        env.update({
            "SYNCD_DATABASE_URL": self.db_url,
            "SYNCD_LOG_FORMAT": "json",
            "SYNCD_LOG_LEVEL": "info",
            "SYNCD_WORKER_CONCURRENCY": str(REPLICA_VENUES // REPLICA_WORKERS),
            "SYNCD_QUEUE_POLL_SECONDS": "0.5",
            "SYNCD_WORKER_GRACE_SECONDS": "2",
            "SYNCD_SYNC_BASE_URLS": json.dumps({self.provider: self.emulator_url}),
        })
        for i in range(REPLICA_WORKERS):
            with open(f"{self.logdir}/{self.provider}-worker-{i}.log", "wb") as out:
                self.procs.append(subprocess.Popen(
                    [SYNCD, "worker", "--no-scheduler", "--owner", f"replica-{i}"],
                    env=env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT))
        return self

    def __exit__(self, *exc: object) -> None:
        import signal

        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(30)
            except Exception:
                proc.kill()
                proc.wait(10)


async def _shared_limiter_cost(pool: asyncpg.Pool, requests: int) -> dict[str, Any]:
    """Milliseconds and round trips per request the shared limiter adds, in-process, on an
    account whose limits are never reached (so only the limiter's own work is counted)."""
    limit = RateLimit(requests_per_second=100_000.0, burst=1000, max_concurrency=64)

    async def run(registry: LimiterRegistry, at_once: int) -> float:
        limiter = registry.get("bench", f"cost-{uuid.uuid4().hex}", limit)

        async def one() -> None:
            async with limiter.slot():
                await asyncio.sleep(0)

        start = time.perf_counter()
        for _ in range(requests // at_once):
            await asyncio.gather(*(one() for _ in range(at_once)))
        return time.perf_counter() - start

    out: dict[str, Any] = {}
    for at_once in (1, 8):
        local = await run(LimiterRegistry(), at_once)
        shared = PostgresLimits(pool, SharedLimitSettings())
        elapsed = await run(LimiterRegistry(shared=shared), at_once)
        trips = shared.round_trips
        await shared.close()
        n = requests // at_once * at_once
        out[f"{at_once}_at_once"] = {
            "requests": n, "ms_per_request": round((elapsed - local) / n * 1000, 3),
            "round_trips_per_request": round(sum(trips.values()) / n, 2), "round_trips": trips}
    return out


async def replicas(pool: asyncpg.Pool, db_url: str, plugins: Any, wanted: list[str],
                   args: argparse.Namespace) -> dict[str, Any]:
    """The replicas measurement for each provider (see the module docstring)."""
    import tempfile

    per_venue = (Sizes(40, 10, 40) if args.quick else Sizes(200, 40, 200))
    venues: list[uuid.UUID] = []
    async with pool.acquire() as conn:
        for i in range(REPLICA_VENUES):
            sample = await seed_venue(conn, name=f"Replica Venue {i}",
                                      customers=per_venue.customers,
                                      events=per_venue.events, orders=per_venue.orders)
            venues.append(sample.venue_id)
    out: dict[str, Any] = {}
    logdir = tempfile.mkdtemp(prefix="syncd-bench-replicas-")
    for name in wanted:
        provider = plugins.providers.get(name)
        if provider is None:
            continue
        print(f"{name} replicas:", file=sys.stderr)
        try:
            out[name] = await _replicas_one(pool, db_url, provider, venues=venues,
                                             args=args, logdir=logdir)
        except Exception as exc:
            out[name] = {"error": f"{type(exc).__name__}: {exc}"}
        print(f"  {name}: {out[name]}", file=sys.stderr)
    out["shared_limiter"] = await _shared_limiter_cost(pool, 400 if args.quick else 2000)
    out["logs"] = logdir
    return out


async def _replicas_one(pool: asyncpg.Pool, db_url: str, provider: Provider, *,
                        venues: list[uuid.UUID], args: argparse.Namespace, logdir: str
                        ) -> dict[str, Any]:
    name = provider.name
    limit = provider.capabilities.rate_limit
    window = args.replicas_seconds
    async with EmulatorProcess(name, args.latency) as server, \
            httpx.AsyncClient(timeout=60) as http:
        url = server.url
        creds = (await http.get(url + "/_emulator/credentials")).json()
        account = {str(k): str(v) for k, v in (creds.get("account") or {}).items()}
        await pool.execute("DELETE FROM integration_configs WHERE provider = $1", name)
        await pool.execute("DELETE FROM sync_queue")
        for i, venue in enumerate(venues):
            await pool.execute(
                "INSERT INTO integration_configs (venue_id, provider, venue_name, status, "
                "credentials, options) VALUES ($1, $2, $3, 'connected', $4, $5)",
                venue, name, f"Replica Venue {i}", {"access_token": "oauth"},
                _options(provider, account))
            await enqueue(pool, venue_id=venue, provider=name, entity_type="all",
                          payload={"trigger": "bench"})
        with ReplicaWorkers(db_url, name, url, logdir):
            # Warm-up: until every worker has started and the account is busy.
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                if len(await _requests(http, url)) > 20:
                    break
                await asyncio.sleep(0.2)
            await asyncio.sleep(args.replicas_warmup)
            before = len(await _requests(http, url))
            usage0 = (await http.get(url + "/_emulator/limits")).json()
            t0 = time.monotonic()
            await asyncio.sleep(window)
            reqs = (await _requests(http, url))[before:]
            usage1 = (await http.get(url + "/_emulator/limits")).json()
            elapsed = time.monotonic() - t0
            buckets = [dict(r) for r in await pool.fetch(
                "SELECT account, bucket, rate::float8, capacity::float8 FROM rate_limit_buckets "
                "WHERE account LIKE $1", f"{name}:%")]
            jobs = {r["status"]: r["n"] for r in await pool.fetch(
                "SELECT status, count(*) AS n FROM sync_queue WHERE provider = $1 "
                "GROUP BY status", name)}
    ok = [r for r in reqs if r.get("status") != 429 and not r.get("fault")]
    throttled = sum(1 for r in reqs if r.get("status") == 429)
    rate, rate_name = _binding_rate(limit)
    fractions = {rate_name: len(ok) / elapsed / rate}
    for key, w in extra_windows(limit.extra):
        if w.scope is not None:
            # Scoped calls (batch) are sparse: their rate is taken between the first and the
            # last one in the window, so a window of ten seconds is not off by a whole call.
            stamps = sorted(float(r["time"]) for r in ok if r.get("batch_size") is not None)
            scoped = ((len(stamps) - 1) / (stamps[-1] - stamps[0])
                      if len(stamps) > 2 and stamps[-1] > stamps[0] else len(stamps) / elapsed)
            fractions[key] = scoped / (w.limit / w.period)
    conn_seconds = sum(u.get("connection_seconds", 0.0) for u in usage1.values()) - sum(
        u.get("connection_seconds", 0.0) for u in usage0.values())
    peak = max((u.get("peak_in_flight", 0) for u in usage1.values()), default=0)
    mean_in_flight = conn_seconds / elapsed
    fractions["max_concurrency"] = mean_in_flight / max(1, limit.max_concurrency)
    limit_fraction = max(fractions.values())
    return {
        "429s": throttled,
        "requests": len(reqs),
        "429s_per_1000": round(throttled * 1000 / max(1, len(reqs)), 2),
        "limit_fraction": round(limit_fraction, 3),
        "binding_limit": max(fractions, key=lambda k: fractions[k]),
        "fractions": {k: round(v, 3) for k, v in fractions.items()},
        "requests_per_s": round(len(ok) / elapsed, 2),
        "mean_in_flight": round(mean_in_flight, 2),
        "peak_in_flight": peak,
        "window_s": round(elapsed, 1),
        "jobs_at_end": jobs,
        "shared_buckets": buckets,
        "goal_met": throttled == 0 and limit_fraction >= 0.9,
    }


async def _requests(http: httpx.AsyncClient, url: str) -> list[dict[str, Any]]:
    data = (await http.get(url + "/_emulator/requests")).json()
    return data if isinstance(data, list) else data.get("requests", [])


async def main(args: argparse.Namespace) -> dict[str, Any]:
    sizes = (Sizes(500, 100, 1_000) if args.quick else Sizes(10_000, 2_000, 20_000))
    plugins = load_plugins()
    wanted = args.providers.split(",") if args.providers else sorted(plugins.providers)
    server = await find_server()
    await server.create_template()
    url = await server.create_database()
    pool = await asyncpg.create_pool(url, min_size=2, max_size=12, init=init_connection)
    assert pool is not None
    out: dict[str, Any] = {"quick": args.quick, "latency_s": args.latency,
                           "budget_s": args.budget, "naive_budget_s": args.naive_budget,
                           "sizes": sizes.__dict__, "providers": {}, "skipped": {}}
    try:
        async with pool.acquire() as conn:
            await create_platform_schema(conn)
            sample = await seed_venue(conn, name="Bench Comedy Club",
                                      customers=sizes.customers, events=sizes.events,
                                      orders=sizes.orders)
        bench = Bench(pool, sample.venue_id, sizes, args)
        for name in ([] if args.replicas_only else wanted):
            provider = plugins.providers.get(name)
            if provider is None:
                out["skipped"][name] = "not loaded"
                continue
            print(f"{name}:", file=sys.stderr)
            try:
                result = await bench.run_provider(provider)
            except NotImplementedError as exc:
                out["skipped"][name] = f"not implemented: {exc}"
                continue
            except Exception as exc:
                out["skipped"][name] = f"{type(exc).__name__}: {exc}"
                print(f"  {name} failed: {type(exc).__name__}: {exc}", file=sys.stderr)
                continue
            out["providers"][name] = {**result.summary, "per_entity": result.entities}
        out["replicas"] = await replicas(pool, url, plugins, wanted, args)
    finally:
        await pool.close()
        await server.drop_database(url)
        await server.close()
    return out


def cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="1/20 of the data and short budgets (about a minute)")
    parser.add_argument("--providers", help="comma-separated providers (default: all loaded)")
    parser.add_argument("--latency", type=float, default=0.03,
                        help="emulator latency per request, seconds")
    parser.add_argument("--budget", type=float, default=None,
                        help="most seconds per entity for syncd's initial sync")
    parser.add_argument("--naive-budget", type=float, default=None,
                        help="most seconds per entity for the naive baseline")
    parser.add_argument("--replicas-only", action="store_true",
                        help="run only the replicas measurement")
    parser.add_argument("--replicas-seconds", type=float, default=None,
                        help="measured window of the replicas mode, seconds")
    parser.add_argument("--replicas-warmup", type=float, default=3.0,
                        help="seconds of the replicas mode before the window opens")
    args = parser.parse_args()
    if args.replicas_seconds is None:
        args.replicas_seconds = 10.0 if args.quick else 40.0
    if args.budget is None:
        args.budget = 1.5 if args.quick else 30.0
    if args.naive_budget is None:
        args.naive_budget = 0.8 if args.quick else 10.0
    configure_logging("error", "console", sys.stderr)
    out = asyncio.run(main(args))
    for name, p in out["providers"].items():
        print(f"{name}: initial {p['initial_records_per_s']:,.0f}/s "
              f"(ceiling {p['ceiling_records_per_s']:,.0f}/s, naive "
              f"{p['naive_records_per_s']:,.0f}/s), resync sent {p['resync_sent']} "
              f"({p['resync_sent_fraction']:.2%}), scan {p['resync_scan_records_per_s']:,.0f}/s, "
              f"full check {p['full_scan_records_per_s']:,.0f}/s, goals {p['goals']}")
    for name, why in out["skipped"].items():
        print(f"{name}: skipped ({why})")
    for name, r in out.get("replicas", {}).items():
        if name in ("shared_limiter", "logs") or "error" in r:
            continue
        print(f"{name} replicas: {r['429s']} 429s ({r['429s_per_1000']}/1000 requests), "
              f"{r['limit_fraction']:.1%} of the limit ({r['binding_limit']}), "
              f"goal {'met' if r['goal_met'] else 'missed'}")
    # Only the two figures the issue names stay under each provider on the last line.
    if "replicas" in out:
        out["replicas_detail"] = out["replicas"]
        out["replicas"] = {
            name: {"429s": r["429s"], "limit_fraction": r["limit_fraction"]}
            for name, r in out["replicas_detail"].items()
            if name not in ("shared_limiter", "logs") and "error" not in r}
    print(json.dumps(out, default=str))


if __name__ == "__main__":
    cli()
