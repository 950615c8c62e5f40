"""Scenarios of syncing under faults: workers killed, providers misbehaving, content that
changes under a retry, a worker cut off from Postgres past its lease."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from urllib.parse import urlsplit, urlunsplit

from bench.proving.daemon import SYNCD, Daemon
from bench.proving.proxy import StallProxy
from bench.proving.registry import Context, Result, scenario
from bench.proving.world import KEYS, Sizes, Tally, World, world

#: Queue timings that make a crashed worker's job come back in seconds, not minutes, and a
#: crash loop that never exhausts a job's attempts (a kill costs the job one attempt).
FAST_QUEUE = {
    "SYNCD_QUEUE_LEASE_SECONDS": "4",
    "SYNCD_QUEUE_HEARTBEAT_SECONDS": "1",
    "SYNCD_QUEUE_POLL_SECONDS": "0.3",
    "SYNCD_QUEUE_RETRY_BASE_SECONDS": "0.5",
    "SYNCD_QUEUE_RETRY_CAP_SECONDS": "2",
    "SYNCD_WORKER_GRACE_SECONDS": "2",
    "SYNCD_WORKER_CONCURRENCY": "2",
    "SYNCD_SCHEDULER_POLL_SECONDS": "1",
}


async def wait_until(check: Callable[[], Awaitable[bool]], timeout: float,
                     what: str, every: float = 0.5) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")
        await asyncio.sleep(every)


def apply_tally(result: Result, tally: Tally) -> None:
    result.expected = tally.expected
    result.at_provider = tally.at_provider
    result.lost = tally.lost
    result.duplicated = tally.duplicated
    if tally.examples:
        result.notes.append("; ".join(tally.examples))


async def dead_letters(w: World) -> list[str]:
    """How each dead letter ended: provider, attempts, error kind and error."""
    return [f"{r['provider']} after {r['attempts']} attempts: {r['error_kind']}: "
            f"{(r['last_error'] or '')[:300]}" for r in await w.pool.fetch(
                "SELECT provider, attempts, error_kind, last_error FROM sync_queue "
                "WHERE status = 'dead_letter' ORDER BY id")]


async def job_statuses(w: World) -> dict[str, int]:
    return {r["status"]: r["n"] for r in await w.pool.fetch(
        "SELECT status, count(*) AS n FROM sync_queue GROUP BY status")}


# --- 1: kill -9 ------------------------------------------------------------------------------

KILL_FULL = {"square": Sizes(100, 3400, 150), "mailchimp": Sizes(100, 4200, 150),
             "quickbooks": Sizes(60, 1200, 140), "stripe": Sizes(20, 400, 80)}
KILL_QUICK = {"square": Sizes(5, 150, 10), "mailchimp": Sizes(5, 150, 10),
              "quickbooks": Sizes(5, 60, 10), "stripe": Sizes(3, 60, 15)}


@scenario(1, "kill-workers", "kill -9 random workers over and over during a sync of every "
          "provider: each record at its emulator exactly once")
async def kill_workers(ctx: Context) -> Result:
    sizes = KILL_QUICK if ctx.quick else KILL_FULL
    rng = random.Random(ctx.seed)
    replicas = 3
    result = Result("kill-workers", fault_kinds="kill -9")
    async with world(ctx.server, "kill", sizes) as w:
        result.load = f"{sum(s.records for s in sizes.values())} records, 4 providers"
        # Each kill costs the job it hit one attempt: a budget no crash loop here exhausts.
        await w.enqueue_all(max_attempts=1000)
        daemon = Daemon(w.db_url, w.workdir / "logs", replicas=replicas,
                        env={**w.daemon_env(), **FAST_QUEUE})
        async with daemon:
            deadline = time.monotonic() + (300 if ctx.quick else 1500)
            # Every 0.5 to 2 s a worker holding a job is killed (the kill lands mid-sync)
            # and started again, up to a budget after which the sync may finish.
            budget = 12 if ctx.quick else 60
            while not await w.queue_settled():
                if time.monotonic() > deadline:
                    raise TimeoutError(f"the sync did not finish: {await job_statuses(w)}")
                await asyncio.sleep(rng.uniform(0.5, 2.0))
                if daemon.kills >= budget or await w.queue_settled():
                    continue
                holders = sorted({int(r[0].rpartition("-")[2]) for r in await w.pool.fetch(
                    "SELECT lease_owner FROM sync_queue WHERE status = 'processing' "
                    "AND lease_owner LIKE 'replica-%'")})
                if not holders:
                    continue
                victim = rng.choice(holders)
                daemon.kill(victim)
                daemon.start_replica(victim)
            result.faults = daemon.kills
        statuses = await job_statuses(w)
        apply_tally(result, await w.tally())
        reclaimed = await w.pool.fetchval("SELECT count(*) FROM sync_queue WHERE attempts > 1")
        result.notes += await dead_letters(w)
    result.notes.append(f"jobs {statuses}, {reclaimed} reclaimed after a kill")
    return result.finish(
        (statuses.keys() == {"completed"}, f"jobs not all completed: {statuses}"),
        (result.faults >= (5 if ctx.quick else 20), f"only {result.faults} kills"),
        (result.expected == result.at_provider, "records at the providers differ"),
    )


# --- 2: provider faults ------------------------------------------------------------------------

FAULTS_FULL = {"square": Sizes(30, 600, 60), "mailchimp": Sizes(30, 800, 60),
               "quickbooks": Sizes(20, 300, 40), "stripe": Sizes(10, 120, 30)}
FAULTS_QUICK = {"square": Sizes(4, 40, 8), "mailchimp": Sizes(4, 40, 8),
                "quickbooks": Sizes(3, 20, 6), "stripe": Sizes(3, 12, 5)}
#: The outage: every request to this provider is answered 429 with a long Retry-After until
#: it is over, so its job is deferred attempt after attempt until its budget runs out.
OUTAGE = "quickbooks"


def fault_mix(quick: bool) -> dict[str, float]:
    """30 % 5xx and every other kind of misbehaviour, each a share of requests."""
    return {"error_rate": 0.3, "rate_limit_storm": 0.05,
            "storm_retry_after": 3.0 if quick else 20.0,
            "timeout_rate": 0.02, "hang_seconds": 1.5, "reset_rate": 0.03,
            "reset_after_commit_rate": 0.03, "slow_rate": 0.05, "slow_seconds": 1.0,
            "malformed_rate": 0.03}


CLEAR = {"error_rate": 0.0, "rate_limit_storm": 0.0, "timeout_rate": 0.0, "reset_rate": 0.0,
         "reset_after_commit_rate": 0.0, "slow_rate": 0.0, "malformed_rate": 0.0}


async def syncd_cli(daemon: Daemon, *args: str) -> str:
    """Run a ``syncd`` command as an operator would, beside the running daemon."""
    proc = await asyncio.create_subprocess_exec(
        SYNCD, *args, env=daemon.environment(), stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT)
    out, _ = await proc.communicate()
    text = out.decode(errors="replace")
    if proc.returncode != 0:
        raise RuntimeError(f"syncd {' '.join(args)} exited {proc.returncode}: {text[-1000:]}")
    return text


@scenario(2, "provider-faults", "30% 5xx, 429 storms with a long Retry-After, timeouts, "
          "resets, slow and malformed answers, one provider down: nothing lost or duplicated, "
          "dead letters only where attempts ran out, replayed to completion")
async def provider_faults(ctx: Context) -> Result:
    sizes = FAULTS_QUICK if ctx.quick else FAULTS_FULL
    result = Result("provider-faults")
    budget = 3
    async with world(ctx.server, "faults", sizes) as w:
        result.load = f"{sum(s.records for s in sizes.values())} records, 4 providers"
        for i, integration in enumerate(w.integrations):
            integration.emulator.update_settings({**fault_mix(ctx.quick), "seed": ctx.seed + i})
        w.emulator(OUTAGE).update_settings({"rate_limit_storm": 1.0})
        # The outage's job runs out of attempts (one in --quick: each attempt waits out the
        # storm's Retry-After several times before the job is deferred).
        await w.enqueue_all(max_attempts=budget, budgets={OUTAGE: 1 if ctx.quick else budget})
        daemon = Daemon(w.db_url, w.workdir / "logs", replicas=2,
                        env={**w.daemon_env(), **FAST_QUEUE,
                             "SYNCD_SYNC_MAX_BACKOFF_SECONDS": "1"})
        async with daemon:
            await wait_until(w.queue_settled, 600 if ctx.quick else 1800,
                             "the faulted syncs to settle")
            during = await job_statuses(w)
            dead = [dict(r) for r in await w.pool.fetch(
                "SELECT id, provider, attempts, max_attempts, error_kind FROM sync_queue "
                "WHERE status = 'dead_letter'")]
            result.notes += await dead_letters(w)
            kinds: dict[str, int] = {}
            for integration in w.integrations:
                for request in integration.emulator.requests:
                    if request.fault:
                        kinds[request.fault] = kinds.get(request.fault, 0) + 1
            outage = sum(1 for r in w.emulator(OUTAGE).requests
                         if r.fault == "rate_limit_storm")
            result.faults = sum(kinds.values())
            result.fault_kinds = ", ".join(f"{n} {k}" for k, n in sorted(kinds.items()))
            w.set_faults(**CLEAR)
            await syncd_cli(daemon, "dlq", "replay", "--all")
            await wait_until(w.queue_settled, 300 if ctx.quick else 900,
                             "the replayed dead letters to finish")
        after = await job_statuses(w)
        apply_tally(result, await w.tally())
    result.notes.append(f"jobs while faulted {during}, after replay {after}; "
                        f"{outage} answers of the {OUTAGE} outage")
    exhausted = all(d["attempts"] >= d["max_attempts"] for d in dead)
    return result.finish(
        (bool(dead) and OUTAGE in {d["provider"] for d in dead},
         "the outage left no dead letter to replay"),
        (exhausted, f"a job was dead-lettered before its attempts ran out: {dead}"),
        (all(d["error_kind"] == "retryable" for d in dead),
         f"a dead letter that is not a retryable failure: {dead}"),
        (after.keys() == {"completed"}, f"jobs not all completed after replay: {after}"),
        (result.expected == result.at_provider, "records at the providers differ"),
    )


# --- 3: content changing under a retry --------------------------------------------------------

EDIT_FULL = {"square": Sizes(0, 300, 0), "mailchimp": Sizes(0, 300, 0),
             "quickbooks": Sizes(0, 200, 0), "stripe": Sizes(0, 100, 0)}
EDIT_QUICK = {"square": Sizes(0, 40, 0), "mailchimp": Sizes(0, 40, 0),
              "quickbooks": Sizes(0, 30, 0), "stripe": Sizes(0, 20, 0)}

#: A remote customer's first name, per provider (the edits change only first names).
FIRST_NAME = {
    "stripe": lambda r: str(r.get("name") or "").split(" ")[0],
    "square": lambda r: r.get("given_name"),
    "mailchimp": lambda r: (r.get("merge_fields") or {}).get("FNAME"),
    "quickbooks": lambda r: r.get("GivenName"),
}


async def _edit(w: World, rng: random.Random, share: float) -> int:
    """Flip the first name of a random share of customers between A and B (``A`` and
    ``A~``): a second flip takes a record back to the content it had (A to B to A)."""
    rows = await w.pool.fetch("SELECT id FROM customers ORDER BY id")
    chosen = [r["id"] for r in rows if rng.random() < share]
    await w.pool.execute(
        "UPDATE customers SET first_name = CASE WHEN first_name LIKE '%~' "
        "THEN rtrim(first_name, '~') ELSE first_name || '~' END, updated_at = now() "
        "WHERE id = ANY($1::uuid[])", chosen)
    return len(chosen)


async def lost_edits(w: World) -> tuple[int, list[str]]:
    """Customers whose remote first name is not the source's."""
    lost, examples = 0, []
    for integration in w.integrations:
        key, sql = KEYS[integration.provider]["customer"]
        remote = {str(key(r)): FIRST_NAME[integration.provider](r)
                  for r in integration.emulator.store.get("customer", {}).values()}
        column = sql.removeprefix("SELECT ").removesuffix(" FROM customers")
        for row in await w.pool.fetch(f"SELECT {column} AS k, first_name FROM customers "
                                      "WHERE venue_id = $1", integration.venue):
            if remote.get(row["k"]) != row["first_name"]:
                lost += 1
                if len(examples) < 4:
                    examples.append(f"{integration.provider} {row['k']}: remote "
                                    f"{remote.get(row['k'])!r}, source {row['first_name']!r}")
    return lost, examples


@scenario(3, "changing-content", "content edited between a committed push and its retry "
          "(answers lost after commit, workers killed), and edits from A to B back to A: "
          "no duplicate, no lost edit")
async def changing_content(ctx: Context) -> Result:
    sizes = EDIT_QUICK if ctx.quick else EDIT_FULL
    rng = random.Random(ctx.seed)
    rounds = 4 if ctx.quick else 8
    result = Result("changing-content", fault_kinds="lost answers, kill -9, edits")
    async with world(ctx.server, "edits", sizes) as w:
        result.load = (f"{sum(s.records for s in sizes.values())} records, {rounds} rounds "
                       "of edits")
        w.set_faults(reset_after_commit_rate=0.3, seed=ctx.seed)
        daemon = Daemon(w.db_url, w.workdir / "logs", replicas=1,
                        env={**w.daemon_env(), **FAST_QUEUE})
        edits = 0
        async with daemon:
            for n in range(rounds):
                await w.enqueue_all("customer", max_attempts=1000)
                # The first push of the round commits and loses some answers; then the
                # worker dies, the content changes, and the retry meets the new content.
                await asyncio.sleep(rng.uniform(0.5, 2.0))
                daemon.kill(0)
                edits += await _edit(w, rng, 0.3)
                daemon.start_replica(0)
                await wait_until(w.queue_settled, 300, f"round {n + 1} to settle")
                edits += await _edit(w, rng, 0.2)
            w.set_faults(reset_after_commit_rate=0.0)
            await w.enqueue_all("customer", max_attempts=1000)
            await wait_until(w.queue_settled, 300, "the last sync to settle")
            result.faults = daemon.kills + sum(
                1 for i in w.integrations for r in i.emulator.requests
                if r.fault == "reset_after_commit")
        apply_tally(result, await w.tally())
        stale, examples = await lost_edits(w)
        statuses = await job_statuses(w)
    result.lost += stale
    result.notes.append(f"{edits} edits; {stale} remote records not at their last edit; "
                        f"jobs {statuses}")
    result.notes += examples
    return result.finish(
        (statuses.keys() == {"completed"}, f"jobs not all completed: {statuses}"),
    )


# --- 5: a worker cut off from Postgres past its lease ------------------------------------------

STALL_FULL = {"stripe": Sizes(0, 300, 0)}
STALL_QUICK = {"stripe": Sizes(0, 60, 0)}


@scenario(5, "stalled-worker", "a worker's Postgres connections stall (a proxy stops moving "
          "bytes) past its lease while it syncs: another worker takes the job over, the "
          "first one's writes are fenced off, every record at the provider once")
async def stalled_worker(ctx: Context) -> Result:
    sizes = STALL_QUICK if ctx.quick else STALL_FULL
    result = Result("stalled-worker", fault_kinds="stalled connection")
    async with world(ctx.server, "stall", sizes) as w:
        result.load = f"{sum(s.records for s in sizes.values())} records, 2 workers"
        parts = urlsplit(w.db_url)
        async with StallProxy(parts.hostname or "127.0.0.1", parts.port or 5432) as proxy:
            proxied = urlunsplit(parts._replace(
                netloc=parts.netloc.replace(f":{parts.port or 5432}", f":{proxy.port}")))
            await w.enqueue_all("customer", max_attempts=100)
            daemon = Daemon(w.db_url, w.workdir / "logs", replicas=1,
                            env={**w.daemon_env(), **FAST_QUEUE,
                                 "SYNCD_QUEUE_LEASE_SECONDS": "3",
                                 "SYNCD_QUEUE_HEARTBEAT_SECONDS": "0.5",
                                 # Sized to the short lease, as an operator would.
                                 "SYNCD_DB_IDLE_TRANSACTION_TIMEOUT": "3"},
                            replica_env={0: {"SYNCD_DATABASE_URL": proxied}})
            emulator = w.emulator("stripe")
            async with daemon:
                # Stall the first worker in the middle of its sync.
                async def started() -> bool:
                    return len(emulator.store.get("customer", {})) >= 5
                await wait_until(started, 120, "the first worker to push", every=0.05)
                proxy.stall()
                owner = await w.pool.fetchval("SELECT lease_owner FROM sync_queue")
                daemon.start_replica(1)
                await daemon.wait_started(only=daemon.replica_processes(1))
                try:
                    await wait_until(w.queue_settled, 120 if ctx.quick else 300,
                                     "the second worker to finish the job")
                except TimeoutError:
                    raise TimeoutError(
                        "the second worker never finished the job; sessions: "
                        + "; ".join(f"{r['pid']} {r['state']} {r['wait_event']} "
                                    f"blocked by {r['blockers']} {r['query'][:60]!r}"
                                    for r in await w.pool.fetch(
                                        "SELECT pid, state, wait_event, query, "
                                        "pg_blocking_pids(pid) AS blockers FROM "
                                        "pg_stat_activity WHERE datname = current_database() "
                                        "AND pid <> pg_backend_pid() AND state <> 'idle'"))
                    ) from None
                # The first worker comes back: whatever it still meant to write is fenced.
                proxy.resume()
                await asyncio.sleep(6)
                result.faults = 1
            job = await w.pool.fetchrow("SELECT status, attempts, error_kind FROM sync_queue")
            apply_tally(result, await w.tally())
            runs = await w.pool.fetch("SELECT status FROM sync_logs ORDER BY started_at")
    # Taken over from the stalled worker once its lease ran out, and completed once.
    fenced = (job["attempts"], job["error_kind"]) == (2, "lease")
    result.notes.append(f"job {dict(job)}; held by {owner} when stalled; sync runs "
                        f"{[r['status'] for r in runs]}")
    return result.finish(
        (owner == "replica-0", f"the stalled worker did not hold the job ({owner})"),
        (job["status"] == "completed", f"the job did not complete: {dict(job)}"),
        (fenced, "the job was not taken over from the stalled worker exactly once"),
        (result.expected == result.at_provider, "records at the provider differ"),
    )
