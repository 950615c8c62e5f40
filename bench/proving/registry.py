"""Scenarios, what each reports, and the scoreboard."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from daemon.testing.postgres import PostgresServer


@dataclass
class Context:
    """What every scenario is given: the Postgres server its fresh database goes on, the
    size to run at, and the seed of every random choice it makes."""

    server: PostgresServer
    quick: bool
    seed: int = 15
    workdir: Path | None = None


@dataclass
class Result:
    """One scenario's row of the scoreboard."""

    name: str
    load: str = ""
    faults: int = 0
    fault_kinds: str = ""
    expected: int = 0
    at_provider: int = 0
    lost: int = 0
    duplicated: int = 0
    forged_accepted: int = 0
    leaked: int = 0
    passed: bool = False
    #: "passed", "failed" or "pending" (its prerequisites are not built yet; never passed).
    status: str = "failed"
    seconds: float = 0.0
    #: Why it failed or is pending, and anything a reader needs to check the figures.
    notes: list[str] = field(default_factory=list)

    def finish(self, *checks: tuple[bool, str]) -> Result:
        """Passed when the zero counts are zero and every ``(ok, why)`` check holds."""
        for ok, why in checks:
            if not ok:
                self.notes.append(why)
        zeros = (self.lost, self.duplicated, self.forged_accepted, self.leaked)
        self.passed = not any(zeros) and all(ok for ok, _ in checks)
        self.status = "passed" if self.passed else "failed"
        return self

    def row(self) -> dict[str, Any]:
        """The fields of the last line's JSON."""
        return {"name": self.name, "load": self.load, "faults": self.faults,
                "lost": self.lost, "duplicated": self.duplicated,
                "forged_accepted": self.forged_accepted, "leaked": self.leaked,
                "passed": self.passed, "status": self.status}

    def describe(self) -> str:
        """The full record, for a failure message."""
        return json.dumps(asdict(self), indent=1)


Run = Callable[[Context], Awaitable[Result]]


@dataclass(frozen=True)
class Scenario:
    number: int
    name: str
    summary: str
    run: Run
    #: Why it cannot run yet; None when it runs.
    pending: str | None = None


SCENARIOS: dict[str, Scenario] = {}


def scenario(number: int, name: str, summary: str,
             pending: str | None = None) -> Callable[[Run], Run]:
    def register(run: Run) -> Run:
        SCENARIOS[name] = Scenario(number, name, summary, run, pending)
        return run
    return register


def pending_result(item: Scenario) -> Result:
    result = Result(item.name, status="pending")
    result.notes.append(f"pending: {item.pending}")
    return result


COLUMNS = ("scenario", "load", "faults", "expected", "at provider", "lost", "dup",
           "forged", "leaked", "seconds", "result")


def scoreboard(results: list[Result]) -> str:
    """The table printed to stdout."""
    rows = [COLUMNS]
    for r in results:
        faults = f"{r.faults} {r.fault_kinds}".strip() if r.status != "pending" else "-"
        if len(faults) > 72:
            faults = faults[:69] + "..."
        rows.append((r.name, r.load or "-", faults, str(r.expected or "-"),
                     str(r.at_provider or "-"), str(r.lost), str(r.duplicated),
                     str(r.forged_accepted), str(r.leaked), f"{r.seconds:.0f}",
                     r.status.upper()))
    widths = [max(len(row[i]) for row in rows) for i in range(len(COLUMNS))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
             for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    for r in results:
        for note in r.notes:
            lines.append(f"{r.name}: {note}")
    return "\n".join(lines)
