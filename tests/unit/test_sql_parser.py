from __future__ import annotations

import pytest

from daemon.sql import QueryParseError, parse_queries, queries


def test_parses_named_queries_in_order() -> None:
    text = "-- header comment\n\n-- name: one\nSELECT 1\n\n-- name: two\nSELECT 2\nFROM t\n"
    assert parse_queries(text) == {"one": "SELECT 1", "two": "SELECT 2\nFROM t"}


def test_rejects_sql_before_first_name() -> None:
    with pytest.raises(QueryParseError, match=r"x\.sql:1: SQL before"):
        parse_queries("SELECT 1\n-- name: a\nSELECT 2", source="x.sql")


def test_rejects_duplicate_and_empty_queries() -> None:
    with pytest.raises(QueryParseError, match="defined twice"):
        parse_queries("-- name: a\nSELECT 1\n-- name: a\nSELECT 2")
    with pytest.raises(QueryParseError, match="'a' is empty"):
        parse_queries("-- name: a\n\n-- name: b\nSELECT 2")


def test_shipped_query_files_parse() -> None:
    q = queries("migrate.sql")
    assert {"lock", "unlock", "create_table", "applied", "record"} <= set(q)
