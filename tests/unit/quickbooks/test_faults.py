"""QuickBooks Fault handling: HTTP 200 with a Fault is an error; codes are classified."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from daemon.httpclient import HTTPError
from daemon.provider import ClientContext, Credentials, ErrorKind
from plugins.quickbooks import QuickBooksProvider
from plugins.quickbooks.client import batch_request_id, classify_fault, fault_of, quote

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "quickbooks"


def test_fault_of_reads_the_documented_shape() -> None:
    fault = fault_of(json.loads((FIXTURES / "fault_200.json").read_text()))
    assert fault is not None
    assert fault.code == "6000"
    assert fault.kind is ErrorKind.PERMANENT
    assert "business validation" in fault.message
    assert fault_of({"QueryResponse": {}}) is None
    assert fault_of("nonsense") is None


@pytest.mark.parametrize(("ftype", "code", "kind"), [
    ("AuthenticationFault", "3200", ErrorKind.AUTH),
    ("AuthorizationFault", "100", ErrorKind.AUTH),
    ("ValidationFault", "6240", ErrorKind.PERMANENT),
    ("ValidationFault", "5010", ErrorKind.PERMANENT),
    ("ValidationFault", "2050", ErrorKind.PERMANENT),
    ("SystemFault", "10000", ErrorKind.RETRYABLE),
    ("ThrottlingFault", "3001", ErrorKind.RETRYABLE),
])
def test_classify_fault(ftype: str, code: str, kind: ErrorKind) -> None:
    assert classify_fault(ftype, code) is kind


async def test_http_200_with_a_fault_is_an_error() -> None:
    body = (FIXTURES / "fault_200.json").read_bytes()
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, content=body, headers={"content-type": "application/json"})

    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as http:
        ctx = ClientContext(venue_id="v", credentials=Credentials(
            access_token="tok-secret-123", account={"realm_id": "42"}), options={}, http=http,
            base_url="https://qb.example.test")
        client = QuickBooksProvider().client(ctx)
        status = await client.test_connection()
        assert not status.ok
        assert "business validation" in status.detail
        with pytest.raises(HTTPError) as info:
            await client.query("select * from Customer")  # type: ignore[attr-defined]
    assert info.value.kind is ErrorKind.PERMANENT
    assert info.value.code == "6000"
    assert "tok-secret-123" not in str(info.value)
    assert seen[0].url.params["minorversion"] == "75"
    assert seen[0].url.path == "/v3/company/42/companyinfo/42"


def test_request_ids_fit_intuit_limits_and_are_deterministic() -> None:
    a = batch_request_id(["k1", "k2"])
    assert len(a) <= 36
    assert a == batch_request_id(["k1", "k2"])
    assert a != batch_request_id(["k2", "k1"])


def test_query_literals_are_escaped() -> None:
    assert quote("O'Brien") == "'O\\'Brien'"
    assert quote("back\\slash") == "'back\\\\slash'"
