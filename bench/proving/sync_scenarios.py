"""Scenarios of syncing under faults: workers killed, providers misbehaving, content that
changes under a retry, a worker cut off from Postgres past its lease."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable

from bench.proving.daemon import Daemon
from bench.proving.registry import Context, Result, scenario
from bench.proving.world import Sizes, Tally, World, world

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
              "quickbooks": Sizes(5, 60, 10), "stripe": Sizes(3, 25, 8)}


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
            while not await w.queue_settled():
                if time.monotonic() > deadline:
                    raise TimeoutError(f"the sync did not finish: {await job_statuses(w)}")
                await asyncio.sleep(rng.uniform(0.5, 2.0))
                if await w.queue_settled():
                    break
                # A worker holding a job when there is one: the kill lands mid-sync.
                holders = sorted({int(r[0].rpartition("-")[2]) for r in await w.pool.fetch(
                    "SELECT lease_owner FROM sync_queue WHERE status = 'processing' "
                    "AND lease_owner LIKE 'replica-%'")})
                victim = rng.choice(holders) if holders else rng.randrange(replicas)
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
