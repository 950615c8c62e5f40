"""The QuickBooks emulator answers in the shapes Intuit documents
(``shared/reference/providers.md`` §4): QueryResponse, BatchItemResponse and Fault."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from daemon.plugins import load_plugins
from tests.contract.traffic import Exchange, record_traffic

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "quickbooks"
#: ``/v3/company/{realmId}/{entity}``, optionally followed by one id (``companyinfo/{realmId}``).
COMPANY = re.compile(r"^/v3/company/[^/]+/(?P<what>[a-z]+)(?:/[^/]+)?$")
FAULT_TYPES = {"ValidationFault", "SystemFault", "AuthenticationFault", "AuthorizationFault"}
#: A 429 carries "message=ThrottleExceeded; errorCode=003001; statusCode=429" (seen in
#: third-party reports of real responses); its fault type is not in Intuit's error page.
THROTTLE_FAULT = "ThrottlingFault"


def _what(x: Exchange) -> str:
    match = COMPANY.match(x.path)
    return match.group("what") if match else ""


def _check_fault(fault: Any, where: str, *, status: int = 200) -> None:
    assert isinstance(fault, dict), f"{where}: Fault is not an object"
    allowed = FAULT_TYPES | ({THROTTLE_FAULT} if status == 429 else set())
    assert fault.get("type") in allowed, f"{where}: Fault.type {fault.get('type')!r}"
    assert isinstance(fault.get("Error"), list), f"{where}: Fault.Error is not a list"
    assert fault["Error"], f"{where}: Fault.Error is empty"
    for error in fault["Error"]:
        assert {"Message", "code"} <= set(error), f"{where}: {error}"


@pytest.fixture(scope="module")
def traffic() -> list[Exchange]:
    exchanges = record_traffic(load_plugins(["quickbooks"]).provider("quickbooks"))
    assert exchanges, "the QuickBooks client sent nothing"
    return exchanges


def test_every_call_is_under_the_company(traffic: list[Exchange]) -> None:
    assert all(_what(x) for x in traffic), [str(x) for x in traffic if not _what(x)]


def test_queries_answer_query_response(traffic: list[Exchange]) -> None:
    queries = [x for x in traffic if _what(x) == "query" and x.status == 200]
    assert queries, "no query was made"
    for x in queries:
        body = x.response_json()
        assert isinstance(body.get("QueryResponse"), dict), f"{x}: {sorted(body)}"
        assert "time" in body


def test_batches_answer_batch_item_response(traffic: list[Exchange]) -> None:
    batches = [x for x in traffic if _what(x) == "batch" and x.status == 200]
    assert batches, "no batch call was made"
    for x in batches:
        sent = x.request_json()["BatchItemRequest"]
        assert 1 <= len(sent) <= 30
        assert all(len(str(item["bId"])) <= 10 for item in sent)
        assert len(x.query.get("requestid", "")) in range(1, 37), f"{x}: requestid"
        items = x.response_json()["BatchItemResponse"]
        assert sorted(i["bId"] for i in items) == sorted(i["bId"] for i in sent)
        for item in items:
            payload = set(item) - {"bId"}
            assert len(payload) == 1, f"{x}: item with {sorted(payload)}"
            if "Fault" in item:
                _check_fault(item["Fault"], str(x))


def test_creates_carry_a_request_id(traffic: list[Exchange]) -> None:
    writes = [x for x in traffic if x.method == "POST" and _what(x) not in ("query", "")
              and x.status != 401]
    assert writes, "no write was sent"
    for x in writes:
        assert 1 <= len(x.query.get("requestid", "")) <= 50, f"{x}: no requestid"


def test_errors_are_faults(traffic: list[Exchange]) -> None:
    errors = [x for x in traffic if x.status >= 400]
    assert any(x.status == 401 for x in errors), "no call was refused with bad credentials"
    for x in errors:
        if x.is_json_response:
            _check_fault(x.response_json().get("Fault"), str(x), status=x.status)
    # A 200 that carries a Fault (QuickBooks' way with some validation errors), if any.
    for x in [x for x in traffic if x.status == 200 and x.is_json_response
              and "Fault" in (x.response_json() or {})]:
        _check_fault(x.response_json()["Fault"], str(x))


def _shape(value: Any) -> Any:
    """The structure of a JSON value: keys and types, no values."""
    if isinstance(value, dict):
        return {k: _shape(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_shape(value[0])] if value else []
    return type(value).__name__


def _covers(answer: Any, recorded: Any, where: str) -> None:
    """``answer`` has every key of ``recorded``, recursively, with the same JSON types."""
    if isinstance(recorded, dict):
        assert isinstance(answer, dict), f"{where}: not an object"
        for key, sub in recorded.items():
            assert key in answer, f"{where}: no {key!r}"
            _covers(answer[key], sub, f"{where}.{key}")
    elif isinstance(recorded, list):
        assert isinstance(answer, list), f"{where}: not a list"
        if recorded and answer:
            _covers(answer[0], recorded[0], f"{where}[0]")
    else:
        assert type(answer).__name__ == recorded, f"{where}: {type(answer).__name__}"


def test_batch_answers_match_a_recorded_quickbooks_response(traffic: list[Exchange]) -> None:
    recorded = json.loads((FIXTURES / "batch_response.json").read_text())
    entity_item, fault_item = recorded["BatchItemResponse"]
    answers = [item for x in traffic if _what(x) == "batch" and x.status == 200
               for item in x.response_json()["BatchItemResponse"]]
    assert answers, "no batch was answered"
    customers = [a for a in answers if "Customer" in a]
    faults = [a for a in answers if "Fault" in a]
    assert customers, "no customer was answered in a batch"
    for answer in customers:
        _covers(answer, _shape(entity_item), "BatchItemResponse[].Customer item")
    for answer in faults:
        _covers(answer, _shape(fault_item), "BatchItemResponse[].Fault item")
    first = next(x for x in traffic if _what(x) == "batch" and x.status == 200)
    assert "time" in first.response_json()
