"""Three ``syncd run`` replicas on one Postgres against the Stripe emulator.

Cron minutes pass in three seconds (``SYNCD_SCHEDULER_TIME_SCALE=20``). Over several ticks
each scheduled sync runs exactly once; ``kill -9`` of the leader hands leadership to
another replica; ``kill -9`` of the replica running a sync leaves its job to another
replica once its lease expires, which completes it with no duplicate at the emulator.
"""

from __future__ import annotations

import asyncio
import signal
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from daemon.db import init_connection
from daemon.provider import EmulatorSettings
from daemon.testing.platform import create_platform_schema, seed_venue
from tests.acceptance.test_cli_sync import ThreadedEmulator
from tests.acceptance.test_run import Daemon

#: (venue id, name, customers): one venue with enough customers that its sync takes a while.
VENUES = [(uuid.UUID(int=0xB16), "Big Hall", 400), (uuid.UUID(int=0xA1), "Small Room", 8),
          (uuid.UUID(int=0xA2), "Side Stage", 8)]


def _config(root: Path) -> None:
    (root / "venues").mkdir(parents=True)
    (root / "templates").mkdir()
    for venue_id, name, _ in VENUES:
        (root / "venues" / f"{venue_id.hex[-4:]}.yaml").write_text(f"""\
venue:
  id: {venue_id}
  name: {name}
  timezone: UTC
integrations:
  - provider: stripe
    credentials: {{api_key: env:VENUE_STRIPE_KEY}}
    schedules:
      customer: {{cron: "* * * * *", lane: NORMAL}}
""")


async def _seed(db_url: str) -> None:
    conn = await asyncpg.connect(db_url)
    try:
        await init_connection(conn)
        await create_platform_schema(conn)
        for venue_id, name, customers in VENUES:
            await seed_venue(conn, venue_id=venue_id, name=name, customers=customers,
                             events=1, orders=0)
    finally:
        await conn.close()


async def _query(db_url: str, sql: str, *args: object) -> list[dict[str, Any]]:
    conn = await asyncpg.connect(db_url)
    try:
        return [dict(r) for r in await conn.fetch(sql, *args)]
    finally:
        await conn.close()


def query(db_url: str, sql: str, *args: object) -> list[dict[str, Any]]:
    return asyncio.run(_query(db_url, sql, *args))


@pytest.fixture
def stripe() -> Iterator[ThreadedEmulator]:
    with ThreadedEmulator("stripe", EmulatorSettings(seed=3, latency=0.05)) as emulator:
        yield emulator


def _wait(check: Callable[[], Any], what: str, replicas: list[Daemon],
          timeout: float = 60) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            tails = "\n---\n".join(r.tail()[-1500:] for r in replicas)
            raise AssertionError(f"timed out waiting for {what}:\n{tails}")
        time.sleep(0.1)


def test_three_replicas_share_the_work_and_survive_kill_9(
        db_url: str, tmp_path: Path, stripe: ThreadedEmulator) -> None:
    _config(tmp_path / "config")
    asyncio.run(_seed(db_url))
    env = {"SYNCD_SCHEDULER_TIME_SCALE": "20", "SYNCD_SCHEDULER_POLL_SECONDS": "0.5",
           "SYNCD_SCHEDULER_CATCHUP_SPREAD_SECONDS": "0",
           "SYNCD_QUEUE_LEASE_SECONDS": "8", "SYNCD_QUEUE_HEARTBEAT_SECONDS": "1",
           "SYNCD_WORKER_CONCURRENCY": "2", "SYNCD_WORKER_GRACE_SECONDS": "5",
           "SYNCD_HEALTH_INTERVAL_SECONDS": "3600",
           "SYNCD_SYNC_BASE_URLS": f'{{"stripe": "{stripe.url}"}}',
           "VENUE_STRIPE_KEY": stripe.get("/_emulator/credentials")["api_key"]}
    replicas = {name: Daemon(db_url, tmp_path, "--owner", name, env=env, name=name)
                for name in ("r1", "r2", "r3")}
    alive = list(replicas.values())
    try:
        for replica in alive:
            replica.url()

        def leaders() -> list[str]:
            return [name for name, r in replicas.items() if r in alive
                    and len(r.named("leader.acquired")) > len(r.named("leader.resigned"))
                    + len(r.named("leader.lost"))]

        first = _wait(leaders, "a leader", alive)
        assert len(first) == 1
        # Every venue's first sync, then a few ticks of incremental ones.
        _wait(lambda: len(query(db_url, "SELECT 1 FROM schedule_ticks")) >= 6,
              "six ticks", alive)

        # kill -9 of the leader: another replica takes over and ticks go on.
        leader = replicas[first[0]]
        leader.proc.send_signal(signal.SIGKILL)
        leader.proc.wait(10)
        alive.remove(leader)
        ticks = len(query(db_url, "SELECT 1 FROM schedule_ticks"))
        second = _wait(leaders, "a new leader", alive, timeout=30)
        assert second[0] != first[0]
        _wait(lambda: len(query(db_url, "SELECT 1 FROM schedule_ticks")) >= ticks + 3,
              "ticks after the handover", alive)

        # kill -9 of the replica in the middle of the big venue's sync.
        big = VENUES[0][0]
        stripe.patch_settings(latency=0.5)  # each update a while: a sync to interrupt
        sent_before = _updates(stripe)
        touched = asyncio.run(_touch(db_url, big))
        running = _wait(lambda: query(
            db_url, "SELECT q.id, q.lease_owner FROM sync_queue q JOIN sync_logs l "
            "ON l.job_id = q.id WHERE q.venue_id = $1 AND q.status = 'processing' "
            "AND l.status = 'running' AND l.started_at > $2", big, touched),
            "the big venue's sync to run", alive)
        job_id, owner = running[0]["id"], running[0]["lease_owner"]
        _wait(lambda: _updates(stripe) > sent_before + 5, "the sync to be under way", alive)
        victim = replicas[owner]
        # The attempt the kill interrupts (a job may have been retried before, say after a
        # 429 from the emulator: that is not a handover).
        [held] = query(db_url, "SELECT attempts FROM sync_queue WHERE id = $1 AND status = "
                       "'processing' AND lease_owner = $2", job_id, owner)
        victim.proc.send_signal(signal.SIGKILL)
        victim.proc.wait(10)
        alive.remove(victim)
        stripe.patch_settings(latency=0.0)
        done = _wait(lambda: query(
            db_url, "SELECT status, attempts FROM sync_queue WHERE id = $1 "
            "AND status = 'completed'", job_id), "the job to complete elsewhere", alive,
            timeout=90)
        # One handover: the next attempt, on another replica, completed the job.
        assert done[0]["attempts"] == held["attempts"] + 1
        logs = query(db_url, "SELECT status FROM sync_logs WHERE job_id = $1 ORDER BY started_at",
                     job_id)
        # The killed run's log stays 'running'; the replica that took over completed it; no
        # earlier run of the job completed.
        assert [r["status"] for r in logs][-2:] == ["running", "completed"]
        assert "completed" not in [r["status"] for r in logs][:-1]

        for replica in alive:
            replica.proc.send_signal(signal.SIGTERM)
        for replica in alive:
            assert replica.proc.wait(60) == 0, replica.tail()
    finally:
        for replica in replicas.values():
            replica.stop()

    # No duplicate at the emulator: one customer per e-mail, every one of them there.
    customers = stripe.store("customer")
    emails = [c["email"] for c in customers]
    assert len(emails) == len(set(emails)) == sum(n for _, _, n in VENUES)
    # Each fired tick's job ran to completion once, and no run of it was recorded twice.
    rows = query(db_url, """
        SELECT t.tick, q.status,
               (SELECT count(*) FROM sync_logs l WHERE l.job_id = q.id
                AND l.status IN ('completed', 'partial')) AS runs
        FROM schedule_ticks t JOIN sync_queue q ON q.id = t.job_id""")
    assert len(rows) >= 9
    assert all(r["runs"] <= 1 for r in rows), rows
    assert all(r["runs"] == 1 for r in rows if r["status"] == "completed"), rows
    assert {r["status"] for r in rows} <= {"completed", "pending"}, rows


async def _touch(db_url: str, venue_id: uuid.UUID) -> datetime:
    """Change every customer of the venue as the platform would; when it committed."""
    conn = await asyncpg.connect(db_url)
    try:
        status = await conn.execute(
            "UPDATE customers SET phone = '+1 555 0199', updated_at = now() "
            "WHERE venue_id = $1", venue_id)
        assert status == f"UPDATE {VENUES[0][2]}"
        committed: datetime = await conn.fetchval("SELECT clock_timestamp()")
        return committed
    finally:
        await conn.close()


def _updates(stripe: ThreadedEmulator) -> int:
    return sum(1 for r in stripe.requests()
               if r["method"] == "POST" and r["path"].startswith("/v1/customers/"))

