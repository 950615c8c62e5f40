"""The Mailchimp emulator answers in the shapes Mailchimp documents
(``shared/reference/providers.md`` §3): batch subscribe results and problem+json errors."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from daemon.plugins import load_plugins
from tests.contract.traffic import Exchange, record_traffic

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "mailchimp"
BATCH_SUBSCRIBE = re.compile(r"^/3\.0/lists/[^/]+/?$")
MEMBER = re.compile(r"^/3\.0/lists/[^/]+/members/[0-9a-f]{32}$")
PROBLEM_KEYS = {"type", "title", "status", "detail", "instance"}


@pytest.fixture(scope="module")
def traffic() -> list[Exchange]:
    exchanges = record_traffic(load_plugins(["mailchimp"]).provider("mailchimp"))
    assert exchanges, "the Mailchimp client sent nothing"
    return exchanges


def test_every_call_is_under_3_0(traffic: list[Exchange]) -> None:
    assert all(x.path.startswith("/3.0/") for x in traffic), [str(x) for x in traffic]


def test_batch_subscribe_answers_new_updated_and_errors(traffic: list[Exchange]) -> None:
    batches = [x for x in traffic if x.method == "POST" and BATCH_SUBSCRIBE.match(x.path)
               and x.status == 200]
    assert batches, "no batch subscribe call was made"
    for x in batches:
        sent = x.request_json()
        assert isinstance(sent["members"], list)
        assert len(sent["members"]) <= 500
        assert "update_existing" in sent
        body = x.response_json()
        for key in ("new_members", "updated_members", "errors"):
            assert isinstance(body.get(key), list), f"{x}: {key} missing or not a list"
        for member in body["new_members"] + body["updated_members"]:
            assert {"id", "email_address", "status"} <= set(member), member
        for error in body["errors"]:
            assert {"email_address", "error"} <= set(error), error


def test_member_upserts_are_by_subscriber_hash(traffic: list[Exchange]) -> None:
    upserts = [x for x in traffic if x.method == "PUT" and "/members/" in x.path]
    assert upserts, "no member was upserted"
    for x in upserts:
        assert MEMBER.match(x.path), f"{x}: not keyed by the MD5 subscriber hash"
        assert "email_address" in x.request_json()


def test_errors_are_problem_json(traffic: list[Exchange]) -> None:
    errors = [x for x in traffic if x.status >= 400 and x.response_body]
    assert any(x.status == 401 for x in errors), "no call was refused with bad credentials"
    for x in errors:
        assert x.response_type == "application/problem+json", f"{x}: {x.response_type}"
        body = x.response_json()
        assert set(body) >= PROBLEM_KEYS, f"{x}: {sorted(body)}"
        assert body["status"] == x.status


def test_batch_subscribe_answers_match_a_recorded_mailchimp_response(
    traffic: list[Exchange],
) -> None:
    recorded = json.loads((FIXTURES / "batch_subscribe_response.json").read_text())
    answers = [x.response_json() for x in traffic if x.method == "POST"
               and BATCH_SUBSCRIBE.match(x.path) and x.status == 200]
    assert answers, "no batch subscribe call was answered"
    members = [m for a in answers for m in a["new_members"] + a["updated_members"]]
    assert members, "no member was created or updated"
    for answer in answers:
        assert set(recorded) <= set(answer), sorted(set(recorded) - set(answer))
        for key in ("total_created", "total_updated", "error_count"):
            assert isinstance(answer[key], int), key
        assert answer["total_created"] == len(answer["new_members"])
        assert answer["total_updated"] == len(answer["updated_members"])
        assert answer["error_count"] == len(answer["errors"])
    member_keys = set(recorded["new_members"][0])
    for member in members:
        assert member_keys <= set(member), sorted(member_keys - set(member))
    error_keys = {"email_address", "error", "error_code"}
    assert all(error_keys <= set(e) for e in recorded["errors"])
    for error in (e for a in answers for e in a["errors"]):
        assert error_keys <= set(error), sorted(error_keys - set(error))
