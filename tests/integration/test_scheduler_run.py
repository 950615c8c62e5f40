"""The scheduler against Postgres: ticks fire once across racing schedulers and restarts,
missed ticks run once, leadership by advisory lock."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import structlog

from daemon.db import open_pool
from daemon.scheduler import Scheduler

NOW = datetime(2024, 3, 10, 12, 7, 30, tzinfo=UTC)


async def _integration(conn: asyncpg.Connection, schedules: dict[str, Any], *,
                       timezone: str = "UTC", enabled: bool = True,
                       provider: str = "square") -> uuid.UUID:
    return await conn.fetchval(
        "INSERT INTO integration_configs (venue_id, provider, timezone, enabled, schedules) "
        "VALUES ($1, $2, $3, $4, $5) RETURNING id",
        uuid.uuid4(), provider, timezone, enabled, schedules,
    )


async def test_fires_the_latest_tick_once_in_the_venue_zone(pool: asyncpg.Pool) -> None:
    iid = await _integration(pool, {  # type: ignore[arg-type]
        "products": {"cron": "0 9 * * *", "lane": "HIGH", "direction": "push"},
        "customers": {"cron": "*/15 * * * *"},
    }, timezone="America/New_York")
    sched = Scheduler(pool)
    fired = await sched.fire_due(NOW)
    by_entity = {f.entity_type: f for f in fired}
    # 12:07 UTC is 08:07 EDT (clocks went forward this morning): the last 09:00 was yesterday,
    # 14:00 UTC while still on EST.
    assert by_entity["products"].tick == datetime(2024, 3, 9, 14, 0, tzinfo=UTC)
    assert by_entity["customers"].tick == datetime(2024, 3, 10, 12, 0, tzinfo=UTC)
    job = await pool.fetchrow("SELECT * FROM sync_queue WHERE id = $1",
                              by_entity["products"].job_id)
    assert job["lane"] == "HIGH"
    assert job["payload"]["direction"] == "push"
    assert job["entity_type"] == "products"
    assert await Scheduler(pool).fire_due(NOW) == []  # a restarted scheduler: nothing new
    assert await pool.fetchval("SELECT count(*) FROM schedule_ticks WHERE integration_id = $1",
                               iid) == 2


async def test_after_downtime_missed_ticks_run_once(pool: asyncpg.Pool) -> None:
    await _integration(pool, {"products": {"cron": "0 * * * *"}})  # type: ignore[arg-type]
    sched = Scheduler(pool)
    assert len(await sched.fire_due(NOW)) == 1
    # Down for five hours: five ticks missed, one job.
    later = await Scheduler(pool).fire_due(NOW + timedelta(hours=5))
    assert [f.tick for f in later] == [datetime(2024, 3, 10, 17, 0, tzinfo=UTC)]
    assert await pool.fetchval("SELECT count(*) FROM schedule_ticks") == 2


async def test_a_tick_older_than_one_fired_never_fires(pool: asyncpg.Pool) -> None:
    await _integration(pool, {"products": {"cron": "0 * * * *"}})  # type: ignore[arg-type]
    await Scheduler(pool).fire_due(NOW)
    # A replica whose clock is an hour behind takes over.
    assert await Scheduler(pool).fire_due(NOW - timedelta(hours=1)) == []


async def test_two_schedulers_racing_enqueue_each_tick_once(db_url: str) -> None:
    pools = [await open_pool(db_url, min_size=2, max_size=4) for _ in range(2)]
    try:
        for n in range(10):
            await _integration(pools[0], {  # type: ignore[arg-type]
                "products": {"cron": "*/5 * * * *"}, "customers": {"cron": "0 * * * *"},
            }, provider=f"p{n}")
        schedulers = [Scheduler(p) for p in pools]
        for minute in range(0, 60, 5):
            now = NOW + timedelta(minutes=minute)
            await asyncio.gather(*(s.fire_due(now) for s in schedulers for _ in range(3)))
        ticks = await pools[0].fetchval("SELECT count(*) FROM schedule_ticks")
        jobs = await pools[0].fetchval(
            "SELECT count(*) FROM sync_queue WHERE payload->>'trigger' = 'schedule'")
        keys = await pools[0].fetchval(
            "SELECT count(DISTINCT idempotency_key) FROM sync_queue")
        # Per integration: 12 five-minute ticks and 2 hourly ones (12:00 and 13:00).
        assert ticks == 10 * (12 + 2)
        # Pending syncs of one entity coalesce: one job per integration and entity.
        assert jobs == keys == 10 * 2
    finally:
        for p in pools:
            await p.close()


async def test_disabled_and_invalid_schedules_do_not_fire(pool: asyncpg.Pool) -> None:
    await _integration(pool, {"products": {"cron": "0 * * * *"}},  # type: ignore[arg-type]
                       enabled=False)
    bad = await _integration(pool, {  # type: ignore[arg-type]
        "products": {"cron": "not a cron"}, "customers": {"cron": "0 * * * *"},
    }, provider="stripe")
    await _integration(pool, {"products": {"cron": "0 * * * *"}},  # type: ignore[arg-type]
                       timezone="Mars/Olympus", provider="mailchimp")
    with structlog.testing.capture_logs() as logs:
        fired = await Scheduler(pool).fire_due(NOW)
    assert [(f.integration_id, f.entity_type) for f in fired] == [(bad, "customers")]
    errors = [e for e in logs if e["event"] == "scheduler.invalid_schedule"]
    assert {e["cron"] for e in errors} == {"not a cron", "0 * * * *"}


async def test_jitter_spreads_the_start_within_its_window(pool: asyncpg.Pool) -> None:
    for n in range(5):
        await _integration(pool, {"products": {"cron": "0 * * * *"}},  # type: ignore[arg-type]
                           provider=f"p{n}")
    fired = await Scheduler(pool, jitter_seconds=600).fire_due(NOW)
    delays = [
        (await pool.fetchval("SELECT run_at FROM sync_queue WHERE id = $1", f.job_id)
         - f.tick).total_seconds()
        for f in fired
    ]
    assert all(0 <= d < 600 for d in delays)
    assert len(set(delays)) == 5


async def test_only_one_scheduler_leads_and_another_takes_over(db_url: str) -> None:
    pools = [await open_pool(db_url, min_size=1, max_size=3) for _ in range(2)]
    schedulers = [Scheduler(p, poll_seconds=0.05) for p in pools]
    tasks = [asyncio.create_task(s.run()) for s in schedulers]
    try:
        async with asyncio.timeout(20):
            while not any(s.is_leader for s in schedulers):
                await asyncio.sleep(0.02)
        await asyncio.sleep(0.3)
        assert sum(s.is_leader for s in schedulers) == 1
        leader = next(i for i, s in enumerate(schedulers) if s.is_leader)
        schedulers[leader].stop()
        await asyncio.wait_for(tasks[leader], 10)
        other = schedulers[1 - leader]
        async with asyncio.timeout(20):
            while not other.is_leader:
                await asyncio.sleep(0.02)
    finally:
        for s in schedulers:
            s.stop()
        await asyncio.gather(*tasks)
        for p in pools:
            await p.close()


async def test_pruning_keeps_each_schedules_latest_tick(pool: asyncpg.Pool) -> None:
    await _integration(pool, {"products": {"cron": "0 * * * *"}})  # type: ignore[arg-type]
    sched = Scheduler(pool, retention_seconds=3600)
    for hours in range(3):
        await sched.fire_due(NOW + timedelta(hours=hours))
    await pool.execute("UPDATE schedule_ticks SET fired_at = now() - interval '2 days'")
    assert await sched.prune() == 2
    assert await pool.fetchval("SELECT tick FROM schedule_ticks") == datetime(
        2024, 3, 10, 14, 0, tzinfo=UTC)
    # The kept tick still stops a re-fire.
    assert await Scheduler(pool).fire_due(NOW + timedelta(hours=2)) == []


async def test_stop_ends_a_pass_between_integrations(pool: asyncpg.Pool) -> None:
    for n in range(40):
        await _integration(pool, {"products": {"cron": "0 * * * *"}},  # type: ignore[arg-type]
                           provider=f"p{n}")
    sched = Scheduler(pool)
    fired: list[int] = []
    real_fire_one = sched._fire_one

    async def fire_one(*args: Any) -> Any:
        result = await real_fire_one(*args)
        fired.append(1)
        if len(fired) == 5:
            sched.stop()  # SIGTERM arrives in the middle of the pass
        return result

    sched._fire_one = fire_one  # type: ignore[method-assign]
    with structlog.testing.capture_logs() as logs:
        await sched.fire_due(NOW)
    assert len(fired) == 5
    assert await pool.fetchval("SELECT count(*) FROM schedule_ticks") == 5
    assert [e["left"] for e in logs if e["event"] == "scheduler.pass_interrupted"] == [35]


async def test_catchup_ticks_of_a_first_start_are_spread(pool: asyncpg.Pool) -> None:
    for n in range(30):
        await _integration(pool, {"products": {"cron": "0 3 * * *"}},  # type: ignore[arg-type]
                           provider=f"p{n}")
    await _integration(pool, {"customers": {"cron": "* * * * *"}})  # type: ignore[arg-type]
    sched = Scheduler(pool, poll_seconds=60, catchup_spread_seconds=300)
    await sched.fire_due(NOW)
    rows = await pool.fetch("SELECT entity_type, run_at FROM sync_queue")
    caught_up = [r["run_at"] for r in rows if r["entity_type"] == "products"]
    assert len(caught_up) == 30
    # 03:00 was hours ago: each job falls due at its own point of the next five minutes.
    assert all(NOW <= t < NOW + timedelta(seconds=300) for t in caught_up)
    assert len(set(caught_up)) == 30
    assert max(caught_up) - min(caught_up) > timedelta(seconds=150)
    # A tick younger than two polls is not a catch-up: it runs at its tick.
    [current] = [r["run_at"] for r in rows if r["entity_type"] == "customers"]
    assert current == datetime(2024, 3, 10, 12, 7, tzinfo=UTC)
