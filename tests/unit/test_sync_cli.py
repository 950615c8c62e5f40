"""The pieces of ``syncd sync`` output: progress bar and summary table."""

from __future__ import annotations

import io
from datetime import UTC, datetime

from daemon.commands.sync import ProgressBar, render_summary
from daemon.provider import Entity
from daemon.sync import EntityReport, RunOutcome, RunReport
from daemon.sync.healing import HealChange
from daemon.sync.report import RecordError


def test_progress_bar_draws_one_line_per_entity() -> None:
    out = io.StringIO()
    bar = ProgressBar(out, width=10)
    bar(Entity.PRODUCT, 0, 0, 4)
    bar(Entity.PRODUCT, 4, 2, 4)
    bar(Entity.CUSTOMER, 3, 3, None)
    bar.close()
    text = out.getvalue()
    assert "[##########] 4/4 read, 2 sent" in text
    assert "customer     3 read, 3 sent" in text
    assert text.count("\n") == 2


def test_summary_table_counts_errors_and_healing() -> None:
    report = RunReport("v1", "square", datetime.now(UTC), api_calls=7, duration_ms=1500)
    report.entities = [EntityReport(Entity.CUSTOMER, full_check=True, scanned=30, created=28,
                                    failed=2, sent=30)]
    report.errors = [RecordError("customer", "c1", "permanent", "email is not valid")]
    report.healed = [HealChange("customer", "Email", "retarget", "Email", "email_address")]
    report.outcome = RunOutcome.OK
    text = render_summary(report)
    header, rule, row = text.splitlines()[:3]
    assert header.split() == ["entity", "read", "unchanged", "created", "updated", "deleted",
                              "archived", "frozen", "failed", "sent", "pulled"]
    assert set(rule.replace(" ", "")) == {"-"}
    assert row.split() == ["customer", "(full)", "30", "0", "28", "0", "0", "0", "0", "2",
                           "30", "0"]
    assert "frozen:" not in text
    assert "square for venue v1: partial in 1.5 s, 7 API calls" in text
    assert "mapping healed: customer: target 'Email' -> 'email_address'" in text
    assert "failed customer c1: email is not valid" in text


def test_summary_shows_frozen_records_as_not_sent_and_not_failed() -> None:
    report = RunReport("v1", "stripe", datetime.now(UTC), api_calls=0, duration_ms=200)
    report.entities = [EntityReport(Entity.TRANSACTION, scanned=3, unchanged=2, frozen=1)]
    text = render_summary(report)
    header, _, row = text.splitlines()[:3]
    assert dict(zip(header.split(), row.split(), strict=True))["frozen"] == "1"
    assert "stripe for venue v1: completed in 0.2 s, 0 API calls" in text
    assert "frozen: 1 not sent (changed since they were sent, and stripe cannot change them " \
        "once created)" in text
