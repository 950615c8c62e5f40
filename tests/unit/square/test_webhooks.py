"""Square webhook verification (official test vectors, properties) and parsing."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from datetime import UTC, datetime
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from daemon.provider import Entity, WebhookRequest
from plugins.square.provider import SquareProvider
from plugins.square.webhooks import SIGNATURE_HEADER

PROVIDER = SquareProvider()
FIXTURES = Path(__file__).parents[2] / "fixtures" / "square"

# The first vector of square-python-sdk tests/integration/test_webhooks_helper.py.
BODY = (b'{"merchant_id":"MLEFBHHSJGVHD","type":"webhooks.test_notification","event_id":'
        b'"ac3ac95b-f97d-458c-a6e6-18981597e05f","created_at":"2022-07-13T20:30:59.037339943Z",'
        b'"data":{"type":"webhooks","id":"bc368e64-01aa-407e-b46e-3231809b1129"}}')
SIGNATURE = "GF4YkrJgGBDZ9NIYbNXBnMzqb2HoL4RW/S6vkZ9/2N4="
KEY = "Ibxx_5AKakO-3qeNVR61Dw"
URL = "https://webhook.site/679a4f3a-dcfa-49ee-bac5-9d0edad886b9"


def delivery(body: bytes, signature: str | None, url: str = URL) -> WebhookRequest:
    headers = {} if signature is None else {"X-Square-HmacSha256-Signature": signature}
    return WebhookRequest(headers=headers, body=body, url=url, received_at=datetime.now(UTC))


def test_official_vector_recomputed_independently() -> None:
    mac = hmac.new(KEY.encode(), URL.encode() + BODY, hashlib.sha256).digest()
    assert base64.b64encode(mac).decode() == SIGNATURE


def test_official_vector_verifies() -> None:
    verdict = PROVIDER.verify_webhook(delivery(BODY, SIGNATURE), KEY)
    assert verdict.ok
    assert verdict.event_id == "ac3ac95b-f97d-458c-a6e6-18981597e05f"


def test_official_escaped_vector_verifies() -> None:
    body = b'{"data":{"type":"webhooks","id":">id<"}}'
    request = delivery(body, "Cxt7+aTi4rKgcA0bC4g9EHdVtLSDWdqccmL5MvihU4U=",
                       "https://webhook.site/webhooks")
    assert PROVIDER.verify_webhook(request, "signature-key").ok


def test_official_mismatches_are_refused() -> None:
    wrong_url = URL.replace("679a4f3a", "79a4f3a")
    assert not PROVIDER.verify_webhook(delivery(BODY, SIGNATURE, wrong_url), KEY).ok
    assert not PROVIDER.verify_webhook(delivery(BODY, SIGNATURE), "MCmhFRxGX82xMwg5FsaoQA").ok
    assert not PROVIDER.verify_webhook(
        delivery(BODY, "1z2n3DEJJiUPKcPzQo1ftvbxGdw="), KEY).ok
    reformatted = json.dumps(json.loads(BODY), indent=2).encode()
    assert not PROVIDER.verify_webhook(delivery(reformatted, SIGNATURE), KEY).ok


def test_missing_header_empty_key_url_or_body_are_refused_without_raising() -> None:
    assert not PROVIDER.verify_webhook(delivery(BODY, None), KEY).ok
    assert not PROVIDER.verify_webhook(delivery(BODY, SIGNATURE), "").ok
    assert not PROVIDER.verify_webhook(delivery(BODY, SIGNATURE, ""), KEY).ok
    assert not PROVIDER.verify_webhook(delivery(b"", SIGNATURE), KEY).ok


def test_reason_never_contains_the_key() -> None:
    for request in (delivery(BODY, None), delivery(BODY, "bad"), delivery(b"x", SIGNATURE)):
        verdict = PROVIDER.verify_webhook(request, KEY)
        assert KEY not in verdict.reason


@given(st.binary(min_size=1, max_size=200), st.integers(min_value=0, max_value=199),
       st.integers(min_value=1, max_value=255))
def test_any_body_tampering_is_refused(body: bytes, position: int, flip: int) -> None:
    good = base64.b64encode(hmac.new(KEY.encode(), URL.encode() + body,
                                     hashlib.sha256).digest()).decode()
    assert PROVIDER.verify_webhook(delivery(body, good), KEY).ok
    index = position % len(body)
    tampered = body[:index] + bytes([body[index] ^ flip]) + body[index + 1:]
    assert not PROVIDER.verify_webhook(delivery(tampered, good), KEY).ok


@given(st.text(min_size=1, max_size=60))
def test_any_other_signature_is_refused(signature: str) -> None:
    if signature.strip() == SIGNATURE:
        return
    assert not PROVIDER.verify_webhook(delivery(BODY, signature), KEY).ok


@given(st.binary(max_size=300), st.dictionaries(st.text(max_size=40), st.text(max_size=80)))
def test_verify_and_parse_never_raise(body: bytes, headers: dict[str, str]) -> None:
    request = WebhookRequest(headers=headers, body=body, url=URL, received_at=datetime.now(UTC))
    assert PROVIDER.verify_webhook(request, KEY).ok in (True, False)
    assert isinstance(PROVIDER.parse_webhook(request), list)


def test_parse_recorded_customer_created() -> None:
    body = (FIXTURES / "customer_created.json").read_bytes()
    [change] = PROVIDER.parse_webhook(delivery(body, None))
    assert change.entity is Entity.CUSTOMER
    assert change.change == "created"
    assert change.remote_id == "JDKYHBWT1D4F8MFH63DBMEN8Y4"
    assert change.dedupe_key == "3b5a6e7c-2f3e-4b6a-9d1c-6c1c2f0a8e11"
    assert change.account_id == "6SSW7HV8K2ST5"
    assert change.occurred_at == datetime(2026, 3, 1, 19, 30, tzinfo=UTC)


def test_parse_ignores_what_it_does_not_understand() -> None:
    assert PROVIDER.parse_webhook(delivery(b"not json", None)) == []
    assert PROVIDER.parse_webhook(delivery(b'{"type": "x"}', None)) == []


def test_header_name_constant_is_lower_case() -> None:
    assert SIGNATURE_HEADER == "x-square-hmacsha256-signature"


def test_an_empty_body_is_refused_even_when_signed() -> None:
    from plugins.square.webhooks import sign

    verdict = PROVIDER.verify_webhook(delivery(b"", sign(b"", URL, KEY)), KEY)
    assert not verdict.ok
    assert verdict.reason == "empty body"
