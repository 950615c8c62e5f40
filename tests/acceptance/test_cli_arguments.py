"""Bad command-line values are usage errors, never tracebacks or silent mass deletes."""

from __future__ import annotations

import uuid

import pytest

from tests.acceptance.conftest import Run
from tests.acceptance.test_cli_queue import VENUE, _dead, _sql


@pytest.mark.parametrize(("args", "complaint"), [
    (["dlq", "list", "--limit", "-1"], "argument --limit: '-1' is not between 1 and 10000"),
    (["dlq", "show", "99999999999999999999"], "argument id: '99999999999999999999' is not "
     "between 1 and 9223372036854775807"),
    (["dlq", "purge", "--all", "--older-than-days", "nan"],
     "argument --older-than-days: 'nan' is not a finite number"),
    (["queue", "prune", "--older-than-days", "1e300"],
     "argument --older-than-days: '1e300' is not between 0 and 36500"),
    (["queue", "prune", "--older-than-days", "-1"],
     "argument --older-than-days: '-1' is not between 0 and 36500"),
    (["dlq", "purge", "--all", "--older-than-days", "-1"],
     "argument --older-than-days: '-1' is not between 0 and 36500"),
    (["dlq", "replay", "0"], "argument ids: '0' is not between 1 and"),
    (["emulate", "stripe", "--port", "99999"], "argument --port: '99999' is not between"),
    (["emulate", "stripe", "--latency", "nan"], "argument --latency: 'nan' is not a finite"),
    # A pool sized for it exhausted memory before the database was even reached.
    (["worker", "--concurrency", "100000000"],
     "argument --concurrency: '100000000' is not between 1 and 1000"),
])
def test_bad_values_are_refused_by_the_parser_and_nothing_changes(
        syncd: Run, db_url: str, args: list[str], complaint: str) -> None:
    _sql(db_url, "INSERT INTO sync_queue (venue_id, provider, entity_type, status, "
         "completed_at) VALUES ($1, 'square', 'a', 'completed', now() - interval '1 day')",
         uuid.UUID(VENUE))
    dead = _dead(db_url, 2)
    out = syncd(*args, env={"SYNCD_DATABASE_URL": db_url})
    assert out.returncode == 2, out.stdout + out.stderr
    assert "Traceback" not in out.stderr
    last = out.stderr.strip().splitlines()[-1]
    assert last.startswith(f"syncd {args[0]}"), out.stderr
    assert complaint in last, out.stderr
    assert last.endswith("--help)"), last
    assert len(out.stderr.strip().splitlines()) == 1
    rows = _sql(db_url, "SELECT id, status FROM sync_queue ORDER BY id")
    assert [r["status"] for r in rows] == ["completed", "dead_letter", "dead_letter"]
    assert [r["id"] for r in rows][1:] == dead


def test_a_database_error_is_one_line(syncd: Run, db_url: str) -> None:
    """An error only the database can see (a value it cannot store) is one line too."""
    out = syncd("queue", "enqueue", "--venue", VENUE, "--provider", "square", "--entity",
                "products", "--payload", '{"n": 1e999}', env={"SYNCD_DATABASE_URL": db_url})
    assert out.returncode == 1, out.stdout + out.stderr
    assert "Traceback" not in out.stderr
    assert out.stderr.strip().splitlines()[-1].startswith(
        "syncd: error: the database refused the request: "), out.stderr
