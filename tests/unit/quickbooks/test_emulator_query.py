"""The QuickBooks emulator's query language: the subset Intuit documents."""

from __future__ import annotations

import pytest

from plugins.quickbooks.emulator import DEFAULT_REALM, QuickBooksEmulator


@pytest.fixture
def emulator() -> QuickBooksEmulator:
    emu = QuickBooksEmulator()
    for i, name in enumerate(["Ada Lovelace", "Grace Hopper", "O'Brien Pub", "Alan Turing"]):
        emu._insert("Customer", DEFAULT_REALM, {
            "DisplayName": name, "PrimaryEmailAddr": {"Address": f"p{i}@example.com"}},
            notify=False)
    return emu


def names(answer: dict[str, object]) -> list[str]:
    rows = answer["QueryResponse"].get("Customer", [])  # type: ignore[attr-defined]
    return [r["DisplayName"] for r in rows]


def test_equality_in_and_like(emulator: QuickBooksEmulator) -> None:
    q = emulator.run_query
    assert names(q(DEFAULT_REALM, "select * from Customer where DisplayName = 'ada lovelace'")
                 ) == ["Ada Lovelace"]
    assert names(q(DEFAULT_REALM, "SELECT * FROM Customer WHERE DisplayName IN "
                   "('Grace Hopper', 'O\\'Brien Pub')")) == ["Grace Hopper", "O'Brien Pub"]
    assert names(q(DEFAULT_REALM, "select * from Customer where DisplayName like 'A%'")) == [
        "Ada Lovelace", "Alan Turing"]
    assert names(q(DEFAULT_REALM, "select * from Customer where PrimaryEmailAddr = "
                   "'p1@example.com'")) == ["Grace Hopper"]


def test_pagination_is_one_based(emulator: QuickBooksEmulator) -> None:
    page = emulator.run_query(DEFAULT_REALM, "select * from Customer STARTPOSITION 3 "
                              "MAXRESULTS 2")
    assert names(page) == ["O'Brien Pub", "Alan Turing"]
    assert page["QueryResponse"]["startPosition"] == 3  # type: ignore[index]
    count = emulator.run_query(DEFAULT_REALM, "select count(*) from Customer")
    assert count["QueryResponse"]["totalCount"] == 4  # type: ignore[index]


def test_inactive_names_are_hidden_unless_asked(emulator: QuickBooksEmulator) -> None:
    [ada] = [r for r in emulator.collection("customer").values()
             if r["DisplayName"] == "Ada Lovelace"]
    ada["Active"] = False
    q = emulator.run_query
    assert "Ada Lovelace" not in names(q(DEFAULT_REALM, "select * from Customer"))
    assert names(q(DEFAULT_REALM, "select * from Customer where DisplayName = 'Ada Lovelace' "
                   "AND Active IN (true, false)")) == ["Ada Lovelace"]


@pytest.mark.parametrize("statement", [
    "select * from Customer where DisplayName = 'a' or DisplayName = 'b'",
    "select * from Customer MAXRESULTS 1001",
    "select DisplayName from Customer",
    "select * from Nonsense",
    "delete from Customer",
])
def test_what_intuit_refuses_is_refused(emulator: QuickBooksEmulator, statement: str) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - the emulator's query error
        emulator.run_query(DEFAULT_REALM, statement)


def test_other_realms_see_nothing(emulator: QuickBooksEmulator) -> None:
    assert names(emulator.run_query("123", "select * from Customer")) == []
