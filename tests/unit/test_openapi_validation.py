"""daemon.testing.openapi: finding, loading and applying a provider's API description."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from daemon.provider import EmulatorSettings
from daemon.testing import openapi
from daemon.testing.openapi import Description, load_description, specs_dir

_DOC = {
    "openapi": "3.0.0", "info": {"version": "2025-01-01"},
    "paths": {
        "/v1/things": {"post": {"requestBody": {"required": True, "content": {
            "application/json": {"schema": {"$ref": "#/components/schemas/Thing"}}}}}},
        "/v1/things/search": {"post": {}},
        "/v1/things/{id}": {"get": {"parameters": [
            {"name": "id", "in": "path", "required": True, "schema": {"type": "string"}},
            {"name": "sort", "in": "query", "schema": {"type": "string",
                                                         "enum": ["A", "B"]}}]}},
    },
    "components": {"schemas": {
        "Thing": {"type": "object", "required": ["name"], "properties": {
            "name": {"type": "string", "maxLength": 3},
            "total": {"$ref": "#/components/schemas/Money", "readOnly": True},
            "child": {"$ref": "#/components/schemas/Thing", "nullable": True},
            "tags": {"type": "object", "additionalProperties": {"type": "string"}},
            "gone": {"$ref": "#/components/schemas/NotThere"},
        }},
        "Money": {"type": "object", "properties": {"amount": {"type": "integer"}}},
    }},
}


def _kinds(problems: list[openapi.Problem]) -> list[tuple[str, tuple[str | int, ...]]]:
    return [(p.kind, p.path) for p in problems]


def test_recursive_refs_siblings_and_dangling_refs_compile() -> None:
    d = Description(_DOC, name="toy")
    matched = d.match("POST", "/v1/things")
    assert matched is not None
    op, params = matched
    assert params == {}
    assert _kinds(op.check(query={}, path_params={}, body={
        "name": "abcd", "child": {"name": "x", "bogus": 1}, "total": {"amount": 1},
        "tags": {"a": 1}, "gone": {"anything": True}})) == [
        ("too_long", ("name",)), ("unknown", ("child", "bogus")), ("read_only", ("total",)),
        ("type", ("tags", "a"))]
    assert _kinds(op.check(query={}, path_params={}, body={"child": None})) == [
        ("missing", ("name",))]
    assert _kinds(op.check(query={}, path_params={}, body=None)) == [("body", ())]


def test_literal_paths_win_over_templates_and_unknown_paths_match_nothing() -> None:
    d = Description(_DOC, name="toy")
    found = d.match("POST", "/v1/things/search")
    assert found is not None
    assert found[0].template == "/v1/things/search"
    found = d.match("GET", "/v1/things/t1")
    assert found is not None
    assert found[1] == {"id": "t1"}
    assert _kinds(found[0].check(query={"sort": "C", "x": "1"}, path_params=found[1],
                                 body=None)) == [("enum", ("sort",)), ("unknown", ("x",))]
    assert d.match("GET", "/v1/nothing") is None
    assert d.match("DELETE", "/v1/things/t1") is None


def test_form_values_are_read_as_their_schema_types() -> None:
    doc = {"paths": {"/f": {"post": {"requestBody": {"content": {
        "application/x-www-form-urlencoded": {"schema": {"type": "object", "properties": {
            "n": {"type": "integer"}, "b": {"type": "boolean"},
            "l": {"type": "array", "items": {"type": "integer"}}}}}}}}}}}
    op = Description(doc, name="form", form=True).operation("post", "/f")
    assert op.check(query={}, path_params={}, body={"n": "12", "b": "true",
                                                     "l": {"0": "1", "1": "2"}}) == []
    assert _kinds(op.check(query={}, path_params={}, body={"n": "1.5", "b": "maybe"})) == [
        ("type", ("n",)), ("type", ("b",))]


def test_invalid_requests_each_carry_the_problem_they_name() -> None:
    d = Description(_DOC, name="toy")
    for op in d.operations():
        made = openapi.invalid_requests(op)
        assert made
        for invalid in made:
            problems = op.check(query=invalid.query, path_params={}, body=invalid.body)
            assert (problems[0].kind, problems[0].path) == (invalid.kind, invalid.field)


def test_yaml_is_parsed_once_then_read_from_the_cache(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    spec = tmp_path / "spec.yaml"
    spec.write_text("openapi: 3.0.0\ninfo: {version: '1'}\npaths: {}\n", "utf-8")
    assert load_description(spec)["info"] == {"version": "1"}
    cached = list((tmp_path / "cache").rglob("*.json"))
    assert len(cached) == 1
    assert json.loads(cached[0].read_text("utf-8"))["info"] == {"version": "1"}


def test_the_specs_directory_comes_from_the_environment(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(openapi.SPECS_ENV, str(tmp_path))
    assert specs_dir() == tmp_path
    monkeypatch.setenv(openapi.SPECS_ENV, str(tmp_path / "missing"))
    assert specs_dir() is None


def test_without_descriptions_an_emulator_says_so_and_checks_nothing(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from plugins.square.emulator import SquareEmulator

    monkeypatch.setenv(openapi.SPECS_ENV, str(tmp_path))
    with capture_logs() as logs:
        emulator = SquareEmulator(EmulatorSettings())
    assert emulator.description is None
    assert any(e["event"] == "emulator.description_missing" for e in logs)


def test_the_response_audit_reports_answers_that_do_not_fit() -> None:
    doc = {"paths": {"/r": {"get": {"responses": {"200": {"content": {"application/json": {
        "schema": {"type": "object", "required": ["id"], "properties": {
            "id": {"type": "string"}, "n": {"type": "integer"}}}}}}}}}}}
    d = Description(doc, name="toy")
    audit = openapi.ResponseAudit(enabled=True)
    audit.observe(d, "GET", "/r", status=200, body=b'{"id": "a", "extra": 1}',
                  content_type="application/json")
    assert audit.problems == []
    audit.observe(d, "GET", "/r", status=200, body=b'{"n": "x"}',
                  content_type="application/json")
    assert audit.checked == 2
    assert [p.split(": ")[1].split(" (")[0] for p in audit.problems] == ["n type",
                                                                          "id missing"]
