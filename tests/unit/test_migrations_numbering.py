"""Migration numbers: no duplicate, and no gap that migrations/README.md does not explain.

The README has two tables: "Unused numbers" (never to have a file) and "Handed out, not
merged yet" (may be missing while their changes are under way, in any order).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
MIGRATIONS = ROOT / "migrations"
_FILE = re.compile(r"^(?P<version>\d{4})_[a-z0-9_]+\.sql$")
_ROW = re.compile(r"^\|\s*(?P<first>\d{4})(?:\s*-\s*(?P<last>\d{4}))?\s*\|\s*(?P<why>[^|]*?)\s*\|")


def _table(readme: str, heading: str) -> dict[int, str]:
    """``{number: reason}`` from the table under ``## heading`` (ranges like 0010-0014)."""
    match = re.search(rf"^## {re.escape(heading)}\n(?P<body>.*?)(?=^## |\Z)", readme, re.M | re.S)
    assert match, f"migrations/README.md has no '## {heading}' section"
    out: dict[int, str] = {}
    for line in match["body"].splitlines():
        row = _ROW.match(line)
        if row:
            first = int(row["first"])
            last = int(row["last"] or first)
            for number in range(first, last + 1):
                out[number] = row["why"]
    return out


def problems(filenames: list[str], readme: str) -> list[str]:
    """Everything wrong with these migration file names, given the README's notes."""
    unused = _table(readme, "Unused numbers")
    handed_out = _table(readme, "Handed out, not merged yet")
    out: list[str] = []
    numbers: dict[int, list[str]] = {}
    for name in sorted(filenames):
        match = _FILE.match(name)
        if not match:
            out.append(f"{name}: not named like 0001_description.sql")
            continue
        numbers.setdefault(int(match["version"]), []).append(name)
    for number, names in sorted(numbers.items()):
        if len(names) > 1:
            out.append(f"{number:04d} is used by {len(names)} files: {', '.join(names)}")
        if number in unused:
            out.append(f"{number:04d} is listed as unused in migrations/README.md but "
                       f"{names[0]} has it")
    for number, why in sorted(unused.items()):
        if not why:
            out.append(f"{number:04d} is listed as unused without a reason")
    top = max(numbers, default=0)
    for number in range(1, top + 1):
        if number not in numbers and number not in unused and number not in handed_out:
            out.append(f"{number:04d} is missing and migrations/README.md does not say why "
                       "(add it to 'Unused numbers' with the reason)")
    return out


def test_the_migrations_have_no_unexplained_gap_or_duplicate() -> None:
    filenames = [p.name for p in MIGRATIONS.iterdir() if p.suffix == ".sql"]
    assert filenames
    assert problems(filenames, (MIGRATIONS / "README.md").read_text()) == []


README = """\
## Unused numbers

| number | why |
|---|---|
| 0002 | never used |

## Handed out, not merged yet

| numbers | to |
|---|---|
| 0005-0006 | under way |
"""


@pytest.mark.parametrize(("files", "expected"), [
    (["0001_a.sql", "0003_b.sql", "0004_c.sql"], []),
    # handed-out numbers may land in any order, or not yet
    (["0001_a.sql", "0003_b.sql", "0004_c.sql", "0006_e.sql"], []),
    (["0001_a.sql", "0003_b.sql", "0004_c.sql", "0005_d.sql", "0006_e.sql", "0007_f.sql"], []),
    (["0001_a.sql", "0003_b.sql", "0004_c.sql", "0004_d.sql"], ["0004 is used by 2 files"]),
    (["0001_a.sql", "0002_x.sql", "0003_b.sql"], ["0002 is listed as unused"]),
    (["0001_a.sql", "0003_b.sql", "0004_c.sql", "0008_late.sql"], ["0007 is missing"]),
    (["0001_a.sql", "3_b.sql"], ["3_b.sql: not named"]),
])
def test_problems_are_found(files: list[str], expected: list[str]) -> None:
    found = problems(files, README)
    assert len(found) == len(expected), found
    for text, want in zip(found, expected, strict=True):
        assert want in text


def test_an_unused_number_needs_a_reason() -> None:
    readme = README.replace("| 0002 | never used |", "| 0002 | |")
    assert problems(["0001_a.sql", "0003_b.sql"], readme) == [
        "0002 is listed as unused without a reason"]
