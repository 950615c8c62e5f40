"""Square webhook signatures and payloads.

``inventory.count.updated`` carries counts, not the change that made them: each ``IN_STOCK``
count becomes an ``inventory`` change keyed by the count itself (see
:mod:`plugins.square.inventory`), so its redelivery and a pull of the same count are one.

Square signs the notification URL (exactly as registered on the subscription) followed by
the raw body, with HMAC-SHA256 keyed by the subscription's signature key as UTF-8 bytes, and
sends the standard base64 digest in ``x-square-hmacsha256-signature``. There is no timestamp,
so replays are caught by de-duplicating on the payload's ``event_id`` (the ``dedupe_key``).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Mapping
from datetime import datetime
from typing import Any, Literal

from daemon.logs import get_logger
from daemon.payloads import load_json
from daemon.provider import (
    Entity,
    InboundChange,
    WebhookRequest,
    WebhookVerdict,
    inbound_values,
)
from plugins.square.capabilities import SQUARE_CAPABILITIES as CAPABILITIES
from plugins.square.inventory import count_change

__all__ = ["SIGNATURE_HEADER", "parse", "sign", "verify"]

SIGNATURE_HEADER = "x-square-hmacsha256-signature"

log = get_logger("syncd.square")

Change = Literal["created", "updated", "deleted", "unsubscribed", "subscribed", "other"]

_ENTITIES: Mapping[str, Entity] = {
    "customer": Entity.CUSTOMER,
    "order": Entity.TRANSACTION,
    "payment": Entity.TRANSACTION,
    "catalog": Entity.PRODUCT,
    "inventory": Entity.INVENTORY,
}
_CHANGES: Mapping[str, Change] = {
    "created": "created", "updated": "updated", "deleted": "deleted",
    "fulfillment": "updated",
}


def sign(body: bytes, url: str, key: str) -> str:
    """The ``x-square-hmacsha256-signature`` value for ``body`` delivered to ``url``."""
    mac = hmac.new(key.encode("utf-8"), url.encode("utf-8") + body, hashlib.sha256)
    return base64.b64encode(mac.digest()).decode("ascii")


def _header(headers: Mapping[str, str], name: str) -> str | None:
    for key, value in headers.items():
        if key.lower() == name:
            return value
    return None


def _event_id(body: bytes) -> str | None:
    try:
        data = load_json(body)
    except ValueError:
        return None
    value = data.get("event_id") if isinstance(data, dict) else None
    return value if isinstance(value, str) else None


def verify(request: WebhookRequest, secret: str) -> WebhookVerdict:
    """Check a delivery exactly as Square specifies. Never raises; never echoes the key."""
    try:
        if not secret:
            return WebhookVerdict(ok=False, reason="no signature key is configured")
        if not request.url:
            return WebhookVerdict(ok=False, reason="the notification URL is unknown")
        if not request.body:
            return WebhookVerdict(ok=False, reason="empty body")
        given = _header(request.headers, SIGNATURE_HEADER)
        if not given:
            return WebhookVerdict(ok=False, reason=f"missing {SIGNATURE_HEADER} header")
        expected = sign(request.body, request.url, secret)
        if not hmac.compare_digest(expected.encode("ascii"), given.strip().encode("utf-8")):
            return WebhookVerdict(ok=False, reason="signature does not match")
        return WebhookVerdict(ok=True, event_id=_event_id(request.body))
    except Exception as exc:  # verification never raises
        return WebhookVerdict(ok=False, reason=f"unverifiable delivery ({type(exc).__name__})")


def _when(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


def parse(request: WebhookRequest) -> list[InboundChange]:
    """A verified delivery as inbound changes; [] for anything not understood (a body that
    is not JSON, or nests deeper than :data:`daemon.payloads.MAX_DEPTH`, is logged)."""
    try:
        event = load_json(request.body)
    except ValueError as exc:
        log.warning("webhook.rejected", provider="square", reason=str(exc))
        return []
    if not isinstance(event, dict):
        return []
    event_type, event_id = event.get("type"), event.get("event_id")
    data = event.get("data")
    if not isinstance(event_type, str) or not isinstance(event_id, str) or not isinstance(
            data, dict):
        return []
    merchant = event.get("merchant_id")
    account = merchant if isinstance(merchant, str) else None
    if event_type == "inventory.count.updated":
        holder = data.get("object")
        counts = holder.get("inventory_counts") if isinstance(holder, dict) else None
        found = [count_change(c, account_id=account, event_type=event_type)
                 for c in (counts if isinstance(counts, list) else []) if isinstance(c, dict)]
        return [c for c in found if c is not None]
    family, _, action = event_type.partition(".")
    entity = _ENTITIES.get(family)
    change: Change = _CHANGES.get(action.split(".")[0], "other")
    obj = data.get("object") if isinstance(data.get("object"), dict) else {}
    assert isinstance(obj, dict)
    remote_id = data.get("id")
    if family == "payment":
        payment = obj.get("payment") if isinstance(obj.get("payment"), dict) else {}
        assert isinstance(payment, dict)
        remote_id = payment.get("order_id") or remote_id
        change = "updated"
    if family == "catalog":
        remote_id = "catalog"  # Square does not say which objects changed
        change = "updated"
    if not isinstance(remote_id, str) or not remote_id:
        return []
    return [InboundChange(
        provider="square",
        entity=entity,
        remote_id=remote_id,
        change=change,
        dedupe_key=event_id,
        payload=obj,
        occurred_at=_when(event.get("created_at")),
        account_id=account,
        event_type=event_type,
        fields=inbound_values(CAPABILITIES.entities[Entity.CUSTOMER].inbound_fields,
                              obj.get("customer"))
        if entity is Entity.CUSTOMER and isinstance(obj.get("customer"), dict)
        and change != "deleted" else None,
    )]
