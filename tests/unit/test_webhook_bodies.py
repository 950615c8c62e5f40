"""Every bundled webhook parser against bodies of any shape: a verified delivery never makes
``parse_webhook`` (or ``verify_webhook``) raise, however deep or strange its body."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from daemon.payloads import MAX_DEPTH, PayloadRejected, load_json, nests_deeper_than
from daemon.plugins import load_plugins
from daemon.provider import InboundChange, Provider, WebhookRequest
from plugins.mailchimp import webhooks as mailchimp
from plugins.quickbooks import webhooks as quickbooks
from plugins.square import webhooks as square
from plugins.stripe import webhooks as stripe

SECRET = "webhook-secret-for-tests"
URL = "https://syncd.example.com/webhooks/x"
NOW = datetime.now(UTC)
T = int(NOW.timestamp())

#: Headers that sign ``body`` for each provider, exactly as the provider would.
SIGNERS: dict[str, Callable[[bytes], dict[str, str]]] = {
    "stripe": lambda b: {"Stripe-Signature": stripe.signature_header(b, T, SECRET)},
    "square": lambda b: {square.SIGNATURE_HEADER: square.sign(b, URL, SECRET)},
    "quickbooks": lambda b: {quickbooks.SIGNATURE_HEADER: quickbooks.sign(b, SECRET)},
    "mailchimp": lambda b: {mailchimp.SIGNATURE_HEADER: mailchimp.sign(b, SECRET, T)},
}
PROVIDERS: dict[str, Provider] = {
    name: load_plugins([name]).provider(name) for name in sorted(SIGNERS)}


def signed(name: str, body: bytes) -> WebhookRequest:
    return WebhookRequest(headers=SIGNERS[name](body), body=body, url=URL, received_at=NOW)


def parsed(name: str, body: bytes, *, authentic: bool = True) -> list[InboundChange]:
    """Verify and parse; neither may raise. ``authentic``: the delivery must verify (its
    signature is right; only a body the provider never sends, an empty one, may fail)."""
    request = signed(name, body)
    verdict = PROVIDERS[name].verify_webhook(request, SECRET)
    if authentic:
        assert verdict.ok, verdict.reason
    changes = PROVIDERS[name].parse_webhook(request)
    assert isinstance(changes, list)
    for change in changes:
        assert isinstance(change, InboundChange)
        json.dumps(dict(change.payload), default=str)  # storable as it is
    return changes


def _deep_json(depth: int) -> list[bytes]:
    return [b"[" * depth + b"]" * depth,
            b'{"a":' * depth + b"1" + b"}" * depth,
            b'{"a":' * depth + b"[" * depth]  # unterminated as well as deep


# The envelope each JSON provider parses, with a deep value where its payload goes.
_ENVELOPES = {
    "stripe": '{{"id": "evt_1", "object": "event", "type": "customer.updated", '
              '"created": 1, "data": {{"object": {{"id": "cus_1", "deep": {deep}}}}}}}',
    "square": '{{"event_id": "e1", "type": "customer.updated", "merchant_id": "M", '
              '"data": {{"id": "c1", "object": {{"customer": {deep}}}}}}}',
    "quickbooks": '{{"eventNotifications": [{{"realmId": "1", "dataChangeEvent": '
                  '{{"entities": [{{"name": "Customer", "id": "1", "operation": "Update", '
                  '"deep": {deep}}}]}}}}]}}',
}


@pytest.mark.parametrize("depth", [MAX_DEPTH + 1, 900, 5_000, 100_000])
@pytest.mark.parametrize("name", ["stripe", "square", "quickbooks"])
def test_a_verified_deeply_nested_json_body_is_rejected_not_raised(
        name: str, depth: int) -> None:
    bodies = _deep_json(depth)
    deep = "[" * depth + "]" * depth
    bodies.append(_ENVELOPES[name].format(deep=deep).encode())
    for body in bodies:
        assert parsed(name, body) == [], body[:80]


@pytest.mark.parametrize("name", ["stripe", "square", "quickbooks"])
def test_a_genuine_envelope_within_the_depth_limit_still_parses(name: str) -> None:
    shallow = "[" * 10 + "]" * 10
    [change] = parsed(name, _ENVELOPES[name].format(deep=shallow).encode())
    assert change.provider == name


@pytest.mark.parametrize("depth", [MAX_DEPTH + 1, 5_000, 100_000])
def test_a_verified_deeply_nested_form_body_is_rejected_not_raised(depth: int) -> None:
    key = "data" + "[a]" * depth
    body = f"type=profile&fired_at=2026-03-26+21%3A40%3A57&data[email]=a%40b.c&{key}=1"
    assert parsed("mailchimp", body.encode()) == []


# --- arbitrary bodies -------------------------------------------------------------------------

_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False)
    | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=4)
    | st.dictionaries(st.sampled_from(["id", "type", "data", "object", "event_id",
                                       "eventNotifications", "specversion", "entities",
                                       "name", "operation", "created", "customer"]) | st.text(
                                           max_size=6), inner, max_size=5),
    max_leaves=30,
)
_form_bodies = st.lists(
    st.tuples(st.sampled_from(["type", "fired_at", "data[id]", "data[email]",
                               "data[list_id]", "data[new_email]", "data[merges][EMAIL]",
                               "data[", "]", "data[[x]]"]) | st.text(max_size=10),
              st.text(max_size=12)),
    max_size=8,
).map(lambda pairs: urlencode(pairs).encode())
_bodies = st.one_of(
    st.binary(max_size=300),
    _json_values.map(lambda v: json.dumps(v).encode()),
    _form_bodies,
    st.integers(1, 3_000).map(lambda n: b"[" * n),
)


@pytest.mark.parametrize("name", sorted(SIGNERS))
@settings(max_examples=300, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=_bodies)
def test_any_verified_body_parses_without_raising(name: str, body: bytes) -> None:
    parsed(name, body, authentic=bool(body))


# --- the bounded decoder itself ---------------------------------------------------------------


def _depth(value: Any) -> int:
    if isinstance(value, list):
        return 1 + max((_depth(v) for v in value), default=0)
    if isinstance(value, dict):
        return 1 + max((_depth(v) for v in value.values()), default=0)
    return 0


@given(value=_json_values, limit=st.integers(0, 8))
def test_depth_is_counted_as_a_json_parser_sees_it(value: Any, limit: int) -> None:
    text = json.dumps(value)
    assert nests_deeper_than(text, limit) == (_depth(value) > limit)


def test_load_json_refuses_with_a_reason() -> None:
    assert load_json(b'{"a": ["[[[{{", 1]}') == {"a": ["[[[{{", 1]}
    for body, reason in [(b"[" * 70 + b"]" * 70, "deeper than 64"),
                         (b"\xff", "not UTF-8"), (b"{", "not JSON")]:
        with pytest.raises(PayloadRejected, match=reason):
            load_json(body)
