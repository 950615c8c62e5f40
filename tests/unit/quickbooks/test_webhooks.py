"""QuickBooks webhook verification (intuit-signature) and parsing, classic and CloudEvents."""

from __future__ import annotations

import base64
import hashlib
import hmac
from datetime import UTC, datetime
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from daemon.provider import Entity, WebhookRequest
from plugins.quickbooks import QuickBooksProvider
from plugins.quickbooks.webhooks import sign

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "quickbooks"
VERIFIER = "qb-verifier-token-test"
NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
provider = QuickBooksProvider()


def delivery(body: bytes, header: str | None = None, name: str = "intuit-signature"
             ) -> WebhookRequest:
    return WebhookRequest(headers={name: header if header is not None else sign(body, VERIFIER)},
                          body=body, url="https://syncd.example.com/webhooks/quickbooks",
                          received_at=NOW)


def classic() -> bytes:
    return (FIXTURES / "webhook_classic.json").read_bytes()


def test_signature_is_base64_hmac_sha256_of_the_body() -> None:
    mac = hmac.new(VERIFIER.encode(), classic(), hashlib.sha256).digest()
    assert sign(classic(), VERIFIER) == base64.b64encode(mac).decode()


def test_genuine_delivery_verifies_whatever_the_header_case() -> None:
    assert provider.verify_webhook(delivery(classic()), VERIFIER).ok
    assert provider.verify_webhook(delivery(classic(), name="Intuit-Signature"), VERIFIER).ok


def test_refusals() -> None:
    missing = WebhookRequest(headers={}, body=classic(), url="", received_at=NOW)
    assert "missing" in provider.verify_webhook(missing, VERIFIER).reason
    assert not provider.verify_webhook(delivery(classic()), VERIFIER + "x").ok
    assert not provider.verify_webhook(delivery(classic()), "").ok
    not_b64 = provider.verify_webhook(delivery(classic(), header="%%%not base64%%%"), VERIFIER)
    assert not not_b64.ok
    assert VERIFIER not in not_b64.reason


@given(st.binary(min_size=1, max_size=100), st.integers(min_value=0, max_value=100_000))
def test_any_tampered_body_is_refused(extra: bytes, position: int) -> None:
    original = classic()
    i = position % len(original)
    tampered = original[:i] + extra + original[i + 1:]
    if tampered == original:
        return
    forged = delivery(tampered, header=sign(original, VERIFIER))
    assert not provider.verify_webhook(forged, VERIFIER).ok


@given(st.binary(min_size=32, max_size=32))
def test_any_other_mac_is_refused(mac: bytes) -> None:
    good = hmac.new(VERIFIER.encode(), classic(), hashlib.sha256).digest()
    if mac == good:
        return
    forged = delivery(classic(), header=base64.b64encode(mac).decode())
    assert not provider.verify_webhook(forged, VERIFIER).ok


@given(st.text(max_size=200))
def test_garbage_headers_never_raise_and_never_pass(header: str) -> None:
    assert not provider.verify_webhook(delivery(classic(), header=header), VERIFIER).ok


def test_classic_payload_parses() -> None:
    changes = provider.parse_webhook(delivery(classic()))
    assert [(c.entity, c.remote_id, c.change) for c in changes] == [
        (Entity.CUSTOMER, "1", "created"), (None, "1", "created"),
        (Entity.TRANSACTION, "130", "deleted")]
    assert all(c.account_id == "1185883450" for c in changes)
    assert changes[0].occurred_at is not None
    assert changes[0].occurred_at.utcoffset() is not None
    assert len({c.dedupe_key for c in changes}) == 3


def test_cloudevents_payload_parses() -> None:
    raw = (FIXTURES / "webhook_cloudevents.json").read_bytes()
    assert provider.verify_webhook(delivery(raw), VERIFIER).ok
    changes = provider.parse_webhook(delivery(raw))
    assert [(c.entity, c.remote_id, c.change, c.event_type) for c in changes] == [
        (Entity.CUSTOMER, "58", "updated", "qbo.customer.updated.v1"),
        (Entity.TRANSACTION, "212", "created", "qbo.salesreceipt.created.v1")]
    assert changes[0].account_id == "9341454929476512"


def test_broken_payloads_parse_to_nothing() -> None:
    for raw in (b"", b"{", b"[]", b"null", b'{"eventNotifications": 3}',
                b'[{"specversion": "1.0", "type": "x"}]', b"\xff"):
        assert provider.parse_webhook(delivery(raw)) == []


def test_non_canonical_base64_is_refused() -> None:
    good = sign(classic(), VERIFIER)
    assert good.endswith("=")
    # The last character before the padding carries 2 unused bits: changing them leaves the
    # decoded bytes alone, but the header is no longer what Intuit sent.
    last = good[-2]
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    twin = alphabet[alphabet.index(last) ^ 1]
    forged = good[:-2] + twin + "="
    assert base64.b64decode(forged) == base64.b64decode(good)
    assert not provider.verify_webhook(delivery(classic(), header=forged), VERIFIER).ok
