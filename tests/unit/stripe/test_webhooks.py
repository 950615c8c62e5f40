"""Stripe webhook verification (recomputed vectors, properties) and parsing."""

from __future__ import annotations

import hashlib
import hmac
from datetime import UTC, datetime
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from daemon.provider import Entity, WebhookRequest
from plugins.stripe.provider import StripeProvider

PROVIDER = StripeProvider()
FIXTURES = Path(__file__).parents[2] / "fixtures" / "stripe"
SECRET = "whsec_test_secret"
NOW = 1_772_393_400
BODY = (FIXTURES / "customer_updated.json").read_bytes()


def expected(body: bytes, timestamp: int, secret: str = SECRET) -> str:
    # Computed here, independently of plugins.stripe.webhooks.
    return hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()


def delivery(body: bytes, header: str | None, now: int = NOW) -> WebhookRequest:
    headers = {} if header is None else {"Stripe-Signature": header}
    return WebhookRequest(headers=headers, body=body, url="https://x/webhooks/stripe",
                          received_at=datetime.fromtimestamp(now, UTC))


def test_a_good_signature_verifies() -> None:
    verdict = PROVIDER.verify_webhook(delivery(BODY, f"t={NOW},v1={expected(BODY, NOW)}"), SECRET)
    assert verdict.ok
    assert verdict.event_id == "evt_1NG8Du2eZvKYlo2CUI79vXWy"


def test_any_one_of_several_v1_signatures_may_match() -> None:
    header = f"t={NOW},v1={'0' * 64},v1={expected(BODY, NOW)},v0=ignored"
    assert PROVIDER.verify_webhook(delivery(BODY, header), SECRET).ok


def test_the_secret_prefix_is_part_of_the_key() -> None:
    sig = expected(BODY, NOW, SECRET.removeprefix("whsec_"))
    assert not PROVIDER.verify_webhook(delivery(BODY, f"t={NOW},v1={sig}"), SECRET).ok


def test_stale_is_refused_and_future_is_accepted() -> None:
    old = NOW - 301
    stale = PROVIDER.verify_webhook(delivery(BODY, f"t={old},v1={expected(BODY, old)}"), SECRET)
    assert not stale.ok
    assert "older" in stale.reason
    edge = NOW - 300
    assert PROVIDER.verify_webhook(delivery(BODY, f"t={edge},v1={expected(BODY, edge)}"),
                                   SECRET).ok
    future = NOW + 3600
    assert PROVIDER.verify_webhook(delivery(BODY, f"t={future},v1={expected(BODY, future)}"),
                                   SECRET).ok


def test_malformed_headers_are_refused_without_raising() -> None:
    for header in (None, "", "garbage", f"t=abc,v1={expected(BODY, NOW)}",
                   f"v1={expected(BODY, NOW)}", f"t={NOW}", f"t={NOW},v0={expected(BODY, NOW)}"):
        verdict = PROVIDER.verify_webhook(delivery(BODY, header), SECRET)
        assert not verdict.ok
        assert SECRET not in verdict.reason


@given(st.binary(min_size=1, max_size=200), st.integers(min_value=0, max_value=199),
       st.integers(min_value=1, max_value=255))
def test_any_body_tampering_is_refused(body: bytes, position: int, flip: int) -> None:
    header = f"t={NOW},v1={expected(body, NOW)}"
    assert PROVIDER.verify_webhook(delivery(body, header), SECRET).ok
    index = position % len(body)
    tampered = body[:index] + bytes([body[index] ^ flip]) + body[index + 1:]
    assert not PROVIDER.verify_webhook(delivery(tampered, header), SECRET).ok


@given(st.integers(min_value=-10**6, max_value=10**6).filter(lambda d: d != 0))
def test_any_timestamp_tampering_is_refused(delta: int) -> None:
    header = f"t={NOW + delta},v1={expected(BODY, NOW)}"
    assert not PROVIDER.verify_webhook(delivery(BODY, header), SECRET).ok


@given(st.text(alphabet="0123456789abcdef", min_size=0, max_size=64))
def test_any_other_signature_is_refused(signature: str) -> None:
    if signature == expected(BODY, NOW):
        return
    assert not PROVIDER.verify_webhook(delivery(BODY, f"t={NOW},v1={signature}"), SECRET).ok


@given(st.binary(max_size=300), st.dictionaries(st.text(max_size=40), st.text(max_size=80)))
def test_verify_and_parse_never_raise(body: bytes, headers: dict[str, str]) -> None:
    request = WebhookRequest(headers=headers, body=body, url="u",
                             received_at=datetime.now(UTC))
    assert PROVIDER.verify_webhook(request, SECRET).ok in (True, False)
    assert isinstance(PROVIDER.parse_webhook(request), list)


def test_parse_recorded_customer_updated() -> None:
    [change] = PROVIDER.parse_webhook(delivery(BODY, None))
    assert change.entity is Entity.CUSTOMER
    assert change.change == "updated"
    assert change.remote_id == "cus_NffrFeUfNV2Hib"
    assert change.dedupe_key == "evt_1NG8Du2eZvKYlo2CUI79vXWy"
    assert change.occurred_at == datetime.fromtimestamp(1772393400, UTC)


def test_parse_ignores_what_it_does_not_understand() -> None:
    assert PROVIDER.parse_webhook(delivery(b"[]", None)) == []
    assert PROVIDER.parse_webhook(delivery(b'{"object": "event"}', None)) == []
