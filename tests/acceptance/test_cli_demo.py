"""The README's first command: ``syncd demo`` runs end to end against local emulators."""

from __future__ import annotations

import re
from pathlib import Path

from tests.acceptance.conftest import Run

ROOT = Path(__file__).resolve().parents[2]


def test_demo_syncs_every_integration_then_sends_only_changes(syncd: Run, db_url: str) -> None:
    out = syncd("--log-level", "error", "demo", "--config", str(ROOT / "config"),
                "--events", "3", "--customers", "8", "--orders", "6",
                env={"SYNCD_DATABASE_URL": db_url}, timeout=600)
    assert out.returncode == 0, out.stdout + out.stderr
    first, second = out.stdout.split("second sync", 1)
    synced = re.findall(r"^  (\w+)\s+completed", first, re.M)
    assert sorted(set(synced)) == ["mailchimp", "quickbooks", "square", "stripe"]
    assert "failed" not in re.sub(r"\d+ failed", "", out.stdout)
    # The second run sends the 3 changed buyers and 1 changed event per venue, nothing else.
    for line in re.findall(r"^  \w+\s+completed.*$", second, re.M):
        assert "0 created" in line
        assert re.search(r"customer: 8 read, 0 created, 3 updated, 5 unchanged", line), line
    assert re.search(r"stripe\s+\d+ products, 8 customers, 6 transactions", out.stdout)
