"""Stripe webhook signatures and payloads.

``Stripe-Signature: t=<unix>,v1=<hex>[,v1=<hex>...]``: HMAC-SHA256 of ``"<t>." + raw body``
keyed by the whole endpoint secret (``whsec_...``) as UTF-8, lowercase hex. Any one ``v1``
may match (several appear while a secret is rolled). A timestamp older than the tolerance
(300 s) is refused; as in Stripe's own libraries, a timestamp in the future is not.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Literal

from daemon.logs import get_logger
from daemon.payloads import load_json
from daemon.provider import (
    Entity,
    InboundChange,
    WebhookRequest,
    WebhookVerdict,
    inbound_values,
)
from plugins.stripe.capabilities import STRIPE_CAPABILITIES as CAPABILITIES

__all__ = ["SIGNATURE_HEADER", "TOLERANCE", "parse", "sign", "signature_header", "verify"]

SIGNATURE_HEADER = "stripe-signature"
#: Seconds a delivery's timestamp may lie in the past (Stripe's default).
TOLERANCE = 300

log = get_logger("syncd.stripe")

Change = Literal["created", "updated", "deleted", "unsubscribed", "subscribed", "other"]

_ENTITIES: Mapping[str, Entity] = {
    "customer": Entity.CUSTOMER,
    "product": Entity.PRODUCT,
    "price": Entity.PRODUCT,
    "invoice": Entity.TRANSACTION,
}
_CHANGES: Mapping[str, Change] = {"created": "created", "updated": "updated",
                                  "deleted": "deleted", "paid": "updated",
                                  "finalized": "updated"}


def sign(body: bytes, timestamp: int, secret: str) -> str:
    """The ``v1`` signature of ``body`` at ``timestamp``."""
    signed = str(timestamp).encode("ascii") + b"." + body
    return hmac.new(secret.encode("utf-8"), signed, hashlib.sha256).hexdigest()


def signature_header(body: bytes, timestamp: int, secret: str) -> str:
    return f"t={timestamp},v1={sign(body, timestamp, secret)}"


def _header(headers: Mapping[str, str], name: str) -> str | None:
    for key, value in headers.items():
        if key.lower() == name:
            return value
    return None


def _parse_header(value: str) -> tuple[int | None, list[str]]:
    timestamp: int | None = None
    v1: list[str] = []
    for item in value.split(","):
        key, sep, val = item.strip().partition("=")
        if not sep:
            continue
        if key == "t":
            try:
                timestamp = int(val)
            except ValueError:
                return None, []
        elif key == "v1":
            v1.append(val)
    return timestamp, v1


def _event_id(body: bytes) -> str | None:
    try:
        data = load_json(body)
    except ValueError:
        return None
    value = data.get("id") if isinstance(data, dict) else None
    return value if isinstance(value, str) else None


def verify(request: WebhookRequest, secret: str, *, tolerance: int = TOLERANCE) -> WebhookVerdict:
    """Check a delivery exactly as Stripe specifies. Never raises; never echoes the secret."""
    try:
        if not secret:
            return WebhookVerdict(ok=False, reason="no endpoint secret is configured")
        header = _header(request.headers, SIGNATURE_HEADER)
        if not header:
            return WebhookVerdict(ok=False, reason="missing Stripe-Signature header")
        timestamp, candidates = _parse_header(header)
        if timestamp is None:
            return WebhookVerdict(ok=False, reason="no timestamp in Stripe-Signature")
        if not candidates:
            return WebhookVerdict(ok=False, reason="no v1 signature in Stripe-Signature")
        expected = sign(request.body, timestamp, secret).encode("ascii")
        if not any(hmac.compare_digest(expected, c.encode("utf-8")) for c in candidates):
            return WebhookVerdict(ok=False, reason="signature does not match")
        now = request.received_at.timestamp()
        if timestamp < now - tolerance:
            return WebhookVerdict(ok=False, reason=f"timestamp older than {tolerance} s")
        return WebhookVerdict(ok=True, event_id=_event_id(request.body))
    except Exception as exc:  # verification never raises
        return WebhookVerdict(ok=False, reason=f"unverifiable delivery ({type(exc).__name__})")


def parse(request: WebhookRequest) -> list[InboundChange]:
    """A verified delivery as inbound changes; [] for anything not understood (a body that
    is not JSON, or nests deeper than :data:`daemon.payloads.MAX_DEPTH`, is logged)."""
    try:
        event = load_json(request.body)
    except ValueError as exc:
        log.warning("webhook.rejected", provider="stripe", reason=str(exc))
        return []
    if not isinstance(event, dict) or event.get("object") != "event":
        return []
    event_id, event_type, data = event.get("id"), event.get("type"), event.get("data")
    if not isinstance(event_id, str) or not isinstance(event_type, str) or not isinstance(
            data, dict) or not isinstance(data.get("object"), dict):
        return []
    obj: dict[str, object] = data["object"]
    family, _, action = event_type.rpartition(".")
    entity = _ENTITIES.get(family)
    remote_id = obj.get("product") if family == "price" else obj.get("id")
    change: Change = _CHANGES.get(action, "other")
    if family == "price":
        change = "updated"
    if not isinstance(remote_id, str) or not remote_id:
        return []
    created = event.get("created")
    account = event.get("account")
    return [InboundChange(
        provider="stripe",
        entity=entity,
        remote_id=remote_id,
        change=change,
        dedupe_key=event_id,
        payload=obj,
        occurred_at=datetime.fromtimestamp(created, UTC) if isinstance(created, int) else None,
        account_id=account if isinstance(account, str) else None,
        event_type=event_type,
        fields=inbound_values(CAPABILITIES.entities[Entity.CUSTOMER].inbound_fields, obj)
        if entity is Entity.CUSTOMER and change != "deleted" else None,
    )]
