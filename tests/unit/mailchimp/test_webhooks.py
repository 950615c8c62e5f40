"""Mailchimp webhook verification (X-Mailchimp-Signature) and parsing."""

from __future__ import annotations

import hashlib
import hmac
from datetime import UTC, datetime, timedelta
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from daemon.provider import Entity, WebhookRequest
from plugins.mailchimp import MailchimpProvider
from plugins.mailchimp.webhooks import encode_form, parse_form, sign, subscriber_hash

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "mailchimp"
SECRET = "whsec-mailchimp-test-secret"
NOW = datetime(2026, 3, 26, 21, 41, tzinfo=UTC)
provider = MailchimpProvider()


def delivery(body: bytes, *, at: datetime = NOW, secret: str = SECRET,
             header: str | None = None) -> WebhookRequest:
    value = header if header is not None else sign(body, secret, int(at.timestamp()))
    return WebhookRequest(headers={"X-Mailchimp-Signature": value,
                                   "Content-Type": "application/x-www-form-urlencoded"},
                          body=body, url="https://syncd.example.com/webhooks/mailchimp",
                          received_at=NOW)


def body() -> bytes:
    return (FIXTURES / "webhook_unsubscribe.txt").read_bytes()


def test_signature_is_hmac_sha256_hex_over_t_dot_body() -> None:
    t = int(NOW.timestamp())
    expected = hmac.new(SECRET.encode(), f"{t}.".encode() + body(), hashlib.sha256).hexdigest()
    assert sign(body(), SECRET, t) == f"t={t},v1={expected}"


def test_genuine_delivery_verifies() -> None:
    verdict = provider.verify_webhook(delivery(body()), SECRET)
    assert verdict.ok, verdict.reason
    assert verdict.event_id


def test_header_lookup_is_case_insensitive() -> None:
    d = delivery(body())
    lowered = WebhookRequest(headers={k.lower(): v for k, v in d.headers.items()},
                             body=d.body, url=d.url, received_at=d.received_at)
    assert provider.verify_webhook(lowered, SECRET).ok


def test_missing_header_is_refused() -> None:
    d = WebhookRequest(headers={}, body=body(), url="", received_at=NOW)
    verdict = provider.verify_webhook(d, SECRET)
    assert not verdict.ok
    assert "missing" in verdict.reason


def test_stale_and_future_timestamps_are_refused() -> None:
    assert provider.verify_webhook(delivery(body(), at=NOW - timedelta(seconds=300)), SECRET).ok
    for skew in (timedelta(seconds=-301), timedelta(seconds=301), timedelta(hours=-1)):
        verdict = provider.verify_webhook(delivery(body(), at=NOW + skew), SECRET)
        assert not verdict.ok
        assert "tolerance" in verdict.reason


def test_wrong_secret_is_refused_and_reason_hides_it() -> None:
    verdict = provider.verify_webhook(delivery(body(), secret="other"), SECRET)
    assert not verdict.ok
    assert SECRET not in verdict.reason
    assert not provider.verify_webhook(delivery(body()), "").ok


def test_one_matching_v1_among_several_is_enough() -> None:
    t = int(NOW.timestamp())
    good = sign(body(), SECRET, t).split("v1=")[1]
    header = f"t={t},v1={'0' * 64},v1={good}"
    assert provider.verify_webhook(delivery(body(), header=header), SECRET).ok


@given(st.binary(min_size=1, max_size=200), st.integers(min_value=0, max_value=10_000))
def test_any_tampered_body_is_refused(extra: bytes, position: int) -> None:
    original = body()
    signed = delivery(original)
    i = position % len(original)
    tampered = original[:i] + extra + original[i + 1:]
    if tampered == original:
        return
    forged = WebhookRequest(headers=dict(signed.headers), body=tampered, url=signed.url,
                            received_at=NOW)
    assert not provider.verify_webhook(forged, SECRET).ok


@given(st.text(max_size=300))
def test_garbage_headers_never_raise_and_never_pass(header: str) -> None:
    verdict = provider.verify_webhook(delivery(body(), header=header), SECRET)
    assert not verdict.ok


@given(st.integers(min_value=0, max_value=63), st.sampled_from("0123456789abcdef"))
def test_any_tampered_signature_is_refused(index: int, char: str) -> None:
    t = int(NOW.timestamp())
    mac = sign(body(), SECRET, t).split("v1=")[1]
    if mac[index] == char:
        return
    forged = mac[:index] + char + mac[index + 1:]
    assert not provider.verify_webhook(delivery(body(), header=f"t={t},v1={forged}"), SECRET).ok


def test_unsubscribe_parses_to_a_customer_change() -> None:
    [change] = provider.parse_webhook(delivery(body()))
    assert change.provider == "mailchimp"
    assert change.entity is Entity.CUSTOMER
    assert change.change == "unsubscribed"
    assert change.remote_id == subscriber_hash("api+unsub@mailchimp.com")
    assert change.account_id == "a6b5da1054"
    assert change.occurred_at == datetime(2026, 3, 26, 21, 40, 57, tzinfo=UTC)
    assert change.payload["data"]["merges"]["FNAME"] == "Mailchimp"
    assert change.dedupe_key == provider.verify_webhook(delivery(body()), SECRET).event_id


def test_upemail_points_at_the_new_address() -> None:
    raw = (FIXTURES / "webhook_upemail.txt").read_bytes()
    [change] = provider.parse_webhook(delivery(raw))
    assert change.change == "updated"
    assert change.remote_id == subscriber_hash("api+new@mailchimp.com")


def test_same_event_same_dedupe_key_different_event_different_key() -> None:
    a = provider.parse_webhook(delivery(body()))[0].dedupe_key
    assert provider.parse_webhook(delivery(body()))[0].dedupe_key == a
    other = body().replace(b"21%3A40%3A57", b"21%3A40%3A58")
    assert provider.parse_webhook(delivery(other))[0].dedupe_key != a


def test_unknown_or_broken_payloads_parse_to_nothing() -> None:
    for raw in (b"", b"type=subscribe", b"\xff\xfe", b"data[email]=x@y.z", b"{}"):
        assert provider.parse_webhook(delivery(raw)) == []


@given(st.dictionaries(st.text(alphabet="abcdefgh", min_size=1, max_size=5),
                       st.text(max_size=20), max_size=5))
def test_form_encoding_round_trips(data: dict[str, str]) -> None:
    from urllib.parse import urlencode

    nested = {"type": "profile", "data": data}
    assert parse_form(urlencode(encode_form(nested)).encode()) == (
        nested if data else {"type": "profile"})


def _form(kind: str, **data: str) -> bytes:
    from urllib.parse import urlencode

    return urlencode(encode_form({"type": kind, "fired_at": "2026-03-26 22:15:09",
                                  "data": data})).encode()


def _key(raw: bytes) -> str:
    [change] = provider.parse_webhook(delivery(raw))
    assert change.dedupe_key == provider.verify_webhook(delivery(raw), SECRET).event_id
    return change.dedupe_key


def test_members_changed_in_the_same_second_get_their_own_dedupe_keys() -> None:
    # cleaned and upemail deliveries carry no data[id]: the member is named by e-mail.
    cleaned = [_form("cleaned", list_id="a6b5da1054", campaign_id="4fjk2ma9xd",
                     reason="hard", email=f"buyer{i}@example.com") for i in (1, 2)]
    assert _key(cleaned[0]) != _key(cleaned[1])
    moved = [_form("upemail", list_id="a6b5da1054", new_id=new_id,
                   new_email=f"new{i}@example.com", old_email=f"old{i}@example.com")
             for i, new_id in ((1, "51da8c3259"), (2, "7c1e0b2f44"))]
    assert _key(moved[0]) != _key(moved[1])
    # One member, the same second, two audiences: two events.
    other_list = _form("cleaned", list_id="ffffffffff", campaign_id="4fjk2ma9xd",
                       reason="hard", email="buyer1@example.com")
    assert _key(other_list) != _key(cleaned[0])
    # A redelivery of one event keeps its key, whatever the order of its fields or the
    # case of its address.
    assert _key(cleaned[0]) == _key(_form(
        "cleaned", email="Buyer1@Example.com", reason="hard", campaign_id="4fjk2ma9xd",
        list_id="a6b5da1054"))
