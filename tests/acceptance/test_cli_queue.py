"""``syncd queue``, ``syncd dlq`` and ``syncd worker`` as an operator runs them."""

from __future__ import annotations

import asyncio
import json
import uuid

import asyncpg

from daemon.db import init_connection
from daemon.queue.claim import claim_jobs
from daemon.queue.lanes import LaneScheduler
from tests.acceptance.conftest import Run

VENUE = "5b1f2c3d-0000-4000-8000-000000000001"


def _sql(db_url: str, query: str, *args: object) -> list[asyncpg.Record]:
    async def go() -> list[asyncpg.Record]:
        conn = await asyncpg.connect(db_url)
        try:
            await init_connection(conn)
            return await conn.fetch(query, *args)
        finally:
            await conn.close()
    return asyncio.run(go())


def _dead(db_url: str, n: int, provider: str = "square") -> list[int]:
    rows = _sql(db_url, """
        INSERT INTO sync_queue (venue_id, provider, entity_type, operation, status, attempts,
                                max_attempts, completed_at, last_error, error_kind)
        SELECT $1, $2, 'e' || g, 'sync', 'dead_letter', 3, 3, now(), 'HTTP 500 from provider',
               'retryable'
          FROM generate_series(1, $3) AS g
        RETURNING id""", uuid.UUID(VENUE), provider, n)
    return [r["id"] for r in rows]


def test_queue_shows_depth_and_running_jobs(syncd: Run, db_url: str) -> None:
    env = {"SYNCD_DATABASE_URL": db_url}
    out = syncd("queue", "enqueue", "--venue", VENUE, "--provider", "square", "--entity",
                "products", "--lane", "high", env=env)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("enqueued job ")
    again = syncd("queue", "enqueue", "--venue", VENUE, "--provider", "square", "--entity",
                  "products", "--json", env=env)
    assert json.loads(again.stdout) == {"job_id": None, "coalesced": True}
    syncd("queue", "enqueue", "--venue", VENUE, "--provider", "stripe", "--entity",
          "customers", env=env)

    async def claim() -> None:
        pool = await asyncpg.create_pool(db_url, min_size=1, max_size=2, init=init_connection)
        try:
            await claim_jobs(pool, owner="worker-7", limit=1, lanes=LaneScheduler(),
                             lease_seconds=60)
        finally:
            await pool.close()

    asyncio.run(claim())  # the HIGH job runs first
    shown = syncd("queue", "--json", env=env)
    assert shown.returncode == 0, shown.stderr
    view = json.loads(shown.stdout)
    assert view["depth"]["HIGH"]["processing"] == 1
    assert view["depth"]["NORMAL"]["pending"] == 1
    assert view["oldest_pending_s"]["NORMAL"] >= 0
    assert view["oldest_pending_s"]["LOW"] is None
    assert [(r["owner"], r["provider"]) for r in view["running"]] == [("worker-7", "square")]
    text = syncd("queue", env=env)
    assert "owner=worker-7" in text.stdout
    assert text.stdout.splitlines()[0].split() == [
        "LANE", "PENDING", "DUE", "RUNNING", "COMPLETED", "FAILED", "DEAD", "OLDEST"]


def test_enqueue_refuses_bad_input_in_one_line(syncd: Run, db_url: str) -> None:
    env = {"SYNCD_DATABASE_URL": db_url}
    bad = syncd("queue", "enqueue", "--venue", "nope", "--provider", "square", "--entity",
                "x", env=env)
    assert bad.returncode == 1
    assert bad.stderr.strip().splitlines()[-1] == "syncd: error: --venue 'nope' is not a UUID"
    bad = syncd("queue", "enqueue", "--venue", VENUE, "--provider", "square", "--entity",
                "x", "--payload", "[1]", env=env)
    assert bad.returncode == 1
    assert "must be a JSON object" in bad.stderr
    assert _sql(db_url, "SELECT count(*) FROM sync_queue")[0][0] == 0


def test_queue_on_an_unmigrated_database_says_what_to_do(syncd: Run, empty_db_url: str) -> None:
    out = syncd("queue", env={"SYNCD_DATABASE_URL": empty_db_url})
    assert out.returncode == 1
    assert "run `syncd migrate`" in out.stderr
    assert "Traceback" not in out.stderr


def test_dlq_list_show_replay_purge(syncd: Run, db_url: str) -> None:
    env = {"SYNCD_DATABASE_URL": db_url}
    ids = _dead(db_url, 3)
    listed = syncd("dlq", "list", "--json", env=env)
    assert listed.returncode == 0, listed.stderr
    assert sorted(j["id"] for j in json.loads(listed.stdout)) == ids
    assert "HTTP 500 from provider" in syncd("dlq", "list", env=env).stdout

    shown = syncd("dlq", "show", str(ids[0]), "--json", env=env)
    assert json.loads(shown.stdout)["status"] == "dead_letter"
    missing = syncd("dlq", "show", "999999", env=env)
    assert missing.returncode == 1
    assert missing.stderr.strip().splitlines()[-1] == "syncd: error: no job 999999"

    replayed = syncd("dlq", "replay", str(ids[0]), env=env)
    assert replayed.returncode == 0, replayed.stderr
    row = _sql(db_url, "SELECT status, attempts FROM sync_queue WHERE id = $1", ids[0])[0]
    assert tuple(row) == ("pending", 0)
    not_dead = syncd("dlq", "replay", str(ids[0]), env=env)
    assert not_dead.returncode == 1
    assert f"not dead letters: {ids[0]}" in not_dead.stdout

    refused = syncd("dlq", "purge", env=env)
    assert refused.returncode == 1
    assert "give the job ids, or --all" in refused.stderr
    purged = syncd("dlq", "purge", "--all", env=env)
    assert purged.stdout.strip() == "purged 2 jobs"
    assert syncd("dlq", "list", env=env).stdout.strip() == "the dead-letter queue is empty"


def test_prune_deletes_old_finished_jobs_only(syncd: Run, db_url: str) -> None:
    _sql(db_url, """
        INSERT INTO sync_queue (venue_id, provider, entity_type, status, completed_at)
        VALUES ($1, 'square', 'a', 'completed', now() - interval '30 days'),
               ($1, 'square', 'b', 'failed', now() - interval '30 days'),
               ($1, 'square', 'c', 'completed', now() - interval '1 day'),
               ($1, 'square', 'd', 'dead_letter', now() - interval '30 days')""",
         uuid.UUID(VENUE))
    out = syncd("queue", "prune", env={"SYNCD_DATABASE_URL": db_url})
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "pruned 2 finished jobs older than 14 days"
    left = _sql(db_url, "SELECT entity_type FROM sync_queue ORDER BY 1")
    assert [r[0] for r in left] == ["c", "d"]


def test_worker_with_a_missing_handler_refuses_to_start(syncd: Run, db_url: str) -> None:
    bad = syncd("worker", "--handler", "no.such.module:handler",
                env={"SYNCD_DATABASE_URL": db_url})
    assert bad.returncode == 1
    assert "cannot be loaded" in bad.stderr
    assert "Traceback" not in bad.stderr
