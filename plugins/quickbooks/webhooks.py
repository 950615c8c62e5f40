"""QuickBooks Online webhooks: signature verification and parsing.

``intuit-signature`` is the base64 HMAC-SHA256 of the raw body keyed by the app's verifier
token. It covers no URL and no timestamp, so there is no tolerance window. The header is
base64-decoded and compared with the expected bytes in constant time.

Two payload formats parse: the classic ``{"eventNotifications": [...]}`` and the CloudEvents
array (``specversion``, ``type: qbo.customer.created.v1``, ``intuitentityid``,
``intuitaccountid``).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Mapping
from datetime import datetime
from typing import Any, Literal

from daemon.logs import get_logger
from daemon.payloads import load_json
from daemon.provider import Entity, InboundChange, WebhookRequest, WebhookVerdict

__all__ = ["SIGNATURE_HEADER", "parse", "sign", "verify"]

SIGNATURE_HEADER = "intuit-signature"
_MAX_HEADER = 512

log = get_logger("syncd.quickbooks")

_ENTITIES: Mapping[str, Entity] = {
    "customer": Entity.CUSTOMER,
    "item": Entity.PRODUCT,
    "salesreceipt": Entity.TRANSACTION,
    "invoice": Entity.TRANSACTION,
}
Change = Literal["created", "updated", "deleted", "other"]
_CHANGES: Mapping[str, Change] = {
    "create": "created",
    "created": "created",
    "update": "updated",
    "updated": "updated",
    "merge": "updated",
    "merged": "updated",
    "void": "updated",
    "voided": "updated",
    "delete": "deleted",
    "deleted": "deleted",
}


def sign(body: bytes, verifier_token: str) -> str:
    """The ``intuit-signature`` value for ``body``."""
    mac = hmac.new(verifier_token.encode("utf-8"), body, hashlib.sha256).digest()
    return base64.b64encode(mac).decode("ascii")


def _header(headers: Mapping[str, str], name: str) -> str | None:
    wanted = name.lower()
    for key, value in headers.items():
        if key.lower() == wanted:
            return value
    return None


def verify(request: WebhookRequest, secret: str) -> WebhookVerdict:
    """Check ``intuit-signature``. Never raises; reasons never hold the verifier token."""
    try:
        if not secret:
            return WebhookVerdict(ok=False, reason="no verifier token configured")
        header = _header(request.headers, SIGNATURE_HEADER)
        if header is None or not header.strip():
            return WebhookVerdict(ok=False, reason=f"missing {SIGNATURE_HEADER} header")
        if len(header) > _MAX_HEADER:
            return WebhookVerdict(ok=False, reason="signature header too long")
        try:
            given = base64.b64decode(header.strip(), validate=True)
        except (binascii.Error, ValueError):
            return WebhookVerdict(ok=False, reason="signature is not base64")
        if base64.b64encode(given).decode("ascii") != header.strip():
            # Non-canonical base64 (altered padding bits) decodes to the same bytes; a
            # signature Intuit made is canonical, so anything else was tampered with.
            return WebhookVerdict(ok=False, reason="signature is not canonical base64")
        expected = hmac.new(secret.encode("utf-8"), request.body, hashlib.sha256).digest()
        if not hmac.compare_digest(expected, given):
            return WebhookVerdict(ok=False, reason="signature mismatch")
        return WebhookVerdict(ok=True, event_id=hashlib.sha256(request.body).hexdigest()[:32])
    except Exception as exc:  # a verifier must refuse, not crash
        return WebhookVerdict(ok=False, reason=f"unverifiable delivery ({type(exc).__name__})")


def _when(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    text = value.replace("Z", "+00:00")
    # Classic payloads use -0700 offsets without a colon.
    if len(text) >= 5 and text[-5] in "+-" and text[-4:].isdigit():
        text = f"{text[:-2]}:{text[-2:]}"
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        return None


def _change(
    entity_name: str, *, remote_id: str, operation: str, realm: str | None, dedupe: str,
    payload: Mapping[str, Any], when: datetime | None, event_type: str,
) -> InboundChange:
    return InboundChange(
        provider="quickbooks",
        entity=_ENTITIES.get(entity_name.lower()),
        remote_id=remote_id,
        change=_CHANGES.get(operation.lower(), "other"),
        dedupe_key=hashlib.sha256(dedupe.encode("utf-8")).hexdigest()[:32],
        payload=dict(payload),
        occurred_at=when,
        account_id=realm,
        event_type=event_type,
    )


def _classic(doc: Mapping[str, Any]) -> list[InboundChange]:
    out: list[InboundChange] = []
    notes = doc.get("eventNotifications")
    if not isinstance(notes, list):
        return out
    for note in notes:
        if not isinstance(note, Mapping):
            continue
        realm = note.get("realmId")
        realm_id = str(realm) if realm is not None else None
        event = note.get("dataChangeEvent")
        entities = event.get("entities") if isinstance(event, Mapping) else None
        if not isinstance(entities, list):
            continue
        for ent in entities:
            if not isinstance(ent, Mapping):
                continue
            name, rid, op = ent.get("name"), ent.get("id"), ent.get("operation")
            if not isinstance(name, str) or rid is None or not isinstance(op, str):
                continue
            updated = ent.get("lastUpdated")
            out.append(_change(
                name, remote_id=str(rid), operation=op, realm=realm_id,
                dedupe=f"{realm_id}|{name}|{rid}|{op}|{updated}", payload=ent,
                when=_when(updated), event_type=f"{name}.{op}"))
    return out


def _cloud(events: list[Any]) -> list[InboundChange]:
    out: list[InboundChange] = []
    for ev in events:
        if not isinstance(ev, Mapping) or "specversion" not in ev:
            continue
        kind, rid = ev.get("type"), ev.get("intuitentityid")
        if not isinstance(kind, str) or rid is None:
            continue
        parts = kind.split(".")  # qbo.<entity>.<operation>.v<N>
        if len(parts) < 3:
            continue
        realm = ev.get("intuitaccountid")
        event_id = ev.get("id")
        dedupe = str(event_id) if event_id else f"{realm}|{kind}|{rid}|{ev.get('time')}"
        out.append(_change(parts[1], remote_id=str(rid), operation=parts[2],
                           realm=str(realm) if realm is not None else None, dedupe=dedupe,
                           payload=ev, when=_when(ev.get("time")), event_type=kind))
    return out


def parse(request: WebhookRequest) -> list[InboundChange]:
    """Normalise a verified delivery, classic or CloudEvents. Bad input: an empty list (a
    body that is not JSON, or nests deeper than :data:`daemon.payloads.MAX_DEPTH`, is
    logged)."""
    try:
        doc = load_json(request.body)
    except ValueError as exc:
        log.warning("webhook.rejected", provider="quickbooks", reason=str(exc))
        return []
    try:
        if isinstance(doc, Mapping):
            return _classic(doc)
        if isinstance(doc, list):
            return _cloud(doc)
    except Exception:
        return []
    return []
