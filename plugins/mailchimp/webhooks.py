"""Mailchimp audience webhooks: signature verification and parsing.

Signed webhooks carry ``X-Mailchimp-Signature: t=<unix seconds>,v1=<hex>``, where ``v1`` is
the HMAC-SHA256 (hex) of ``"<t>." + raw body`` keyed by the webhook's signing secret. A
timestamp more than 300 s from now (either way) is refused, and so is a missing header
(webhooks created before signing existed send none). Bodies are form-encoded
(``type=unsubscribe&fired_at=...&data[email]=...``).

Mailchimp sends no delivery id, so the dedupe key is built from what identifies an event:
its type, the audience (``data[list_id]``), the member or campaign (``data[id]``, and for
``upemail`` ``data[new_id]``; the addresses ``data[email]``, ``data[old_email]`` and
``data[new_email]``, lower-cased) and ``fired_at``. ``cleaned`` and ``upemail`` deliveries
carry no ``data[id]``: their addresses tell two members apart within one second.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Literal
from urllib.parse import parse_qsl

from daemon.logs import get_logger
from daemon.payloads import MAX_DEPTH, PayloadRejected
from daemon.provider import Entity, InboundChange, WebhookRequest, WebhookVerdict

__all__ = [
    "SIGNATURE_HEADER",
    "TOLERANCE_SECONDS",
    "encode_form",
    "member_fields",
    "parse",
    "parse_form",
    "sign",
    "subscriber_hash",
    "verify",
]

SIGNATURE_HEADER = "X-Mailchimp-Signature"
TOLERANCE_SECONDS = 300
_MAX_HEADER = 4096

log = get_logger("syncd.mailchimp")

_CHANGES: Mapping[str, Literal["subscribed", "unsubscribed", "updated", "other"]] = {
    "subscribe": "subscribed",
    "unsubscribe": "unsubscribed",
    "cleaned": "unsubscribed",
    "profile": "updated",
    "upemail": "updated",
}


def subscriber_hash(email: str) -> str:
    """Mailchimp's member id: the MD5 hex of the lower-cased email."""
    return hashlib.md5(email.strip().lower().encode("utf-8"), usedforsecurity=False).hexdigest()


def sign(body: bytes, secret: str, timestamp: int) -> str:
    """The ``X-Mailchimp-Signature`` value for ``body`` at ``timestamp``."""
    mac = hmac.new(secret.encode("utf-8"), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"t={timestamp},v1={mac.hexdigest()}"


def _header(headers: Mapping[str, str], name: str) -> str | None:
    wanted = name.lower()
    for key, value in headers.items():
        if key.lower() == wanted:
            return value
    return None


def verify(request: WebhookRequest, secret: str) -> WebhookVerdict:
    """Check a delivery's signature and age. Never raises; reasons never hold the secret."""
    try:
        return _verify(request, secret)
    except Exception as exc:  # a verifier must refuse, not crash
        return WebhookVerdict(ok=False, reason=f"unverifiable delivery ({type(exc).__name__})")


def _verify(request: WebhookRequest, secret: str) -> WebhookVerdict:
    if not secret:
        return WebhookVerdict(ok=False, reason="no signing secret configured")
    header = _header(request.headers, SIGNATURE_HEADER)
    if header is None:
        return WebhookVerdict(ok=False, reason=f"missing {SIGNATURE_HEADER} header")
    if len(header) > _MAX_HEADER:
        return WebhookVerdict(ok=False, reason="signature header too long")
    timestamp: int | None = None
    candidates: list[str] = []
    for part in header.split(","):
        key, sep, value = part.strip().partition("=")
        if not sep:
            continue
        if key == "t":
            if not value.isdigit() or len(value) > 12:
                return WebhookVerdict(ok=False, reason="malformed signature timestamp")
            timestamp = int(value)
        elif key == "v1":
            candidates.append(value)
    if timestamp is None or not candidates:
        return WebhookVerdict(ok=False, reason="malformed signature header")
    now = request.received_at.timestamp()
    if abs(now - timestamp) > TOLERANCE_SECONDS:
        return WebhookVerdict(ok=False, reason="signature timestamp outside the 300 s tolerance")
    expected = sign(request.body, secret, timestamp).rpartition("v1=")[2].encode("ascii")
    if not any(hmac.compare_digest(expected, c.encode("utf-8")) for c in candidates):
        return WebhookVerdict(ok=False, reason="signature mismatch")
    try:
        event_id: str | None = _dedupe_key(parse_form(request.body))
    except PayloadRejected:
        event_id = None  # authentic, but parse() will refuse it
    return WebhookVerdict(ok=True, event_id=event_id)


def parse_form(body: bytes) -> dict[str, Any]:
    """A form body with ``a[b][c]=v`` keys as nested dicts. A key nested deeper than
    :data:`daemon.payloads.MAX_DEPTH` raises :class:`~daemon.payloads.PayloadRejected`."""
    out: dict[str, Any] = {}
    text = body.decode("utf-8", errors="replace")
    for key, value in parse_qsl(text, keep_blank_values=True):
        if key.count("[") >= MAX_DEPTH:
            raise PayloadRejected(f"a form field nests deeper than {MAX_DEPTH} levels")
        parts = [p.rstrip("]") for p in key.split("[")]
        node = out
        for part in parts[:-1]:
            child = node.get(part)
            if not isinstance(child, dict):
                child = {}
                node[part] = child
            node = child
        node[parts[-1]] = value
    return out


def encode_form(data: Mapping[str, Any], prefix: str = "") -> list[tuple[str, str]]:
    """The inverse of :func:`parse_form`: nested dicts as ``a[b]=v`` pairs."""
    pairs: list[tuple[str, str]] = []
    for key, value in data.items():
        name = f"{prefix}[{key}]" if prefix else str(key)
        if isinstance(value, Mapping):
            pairs.extend(encode_form(value, name))
        else:
            pairs.append((name, "" if value is None else str(value)))
    return pairs


#: The ``data[...]`` fields that name an event's audience, member or campaign.
_IDENTITY = ("list_id", "id", "new_id", "email", "old_email", "new_email")


def _dedupe_key(form: Mapping[str, Any]) -> str:
    data = form.get("data")
    fields = data if isinstance(data, Mapping) else {}
    identity = [str(fields.get(name, "")).strip().lower() if "email" in name
                else str(fields.get(name, "")) for name in _IDENTITY]
    raw = "|".join([str(form.get("type", "")), *identity, str(form.get("fired_at", ""))])
    return hashlib.sha256(raw.encode("utf-8")).hexdigest()[:32]


#: Consent by member status; a status not listed (pending, archived) says nothing.
_SUBSCRIBED = {"subscribed": True, "unsubscribed": False, "cleaned": False,
               "transactional": False}
_WEBHOOK_STATUS = {"subscribe": "subscribed", "unsubscribe": "unsubscribed",
                   "cleaned": "cleaned"}
_MERGES = ("FNAME", "LNAME", "PHONE")


def member_fields(email: Any, status: Any, merges: Any) -> dict[str, Any]:
    """A member's values in the inbound field catalogue (``capabilities._MEMBER_INBOUND``):
    the same keys from a webhook's form and from a pulled member."""
    out: dict[str, Any] = {}
    if isinstance(email, str) and email.strip():
        out["email_address"] = email.strip()
    if isinstance(status, str) and status:
        out["status"] = status
        if status in _SUBSCRIBED:
            out["subscribed"] = _SUBSCRIBED[status]
    if isinstance(merges, Mapping):
        for key in _MERGES:
            value = merges.get(key)
            if isinstance(value, str):
                out[f"merge_fields.{key}"] = value
    return out


def _fired_at(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        when = datetime.fromisoformat(value.replace(" ", "T"))
    except ValueError:
        return None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def parse(request: WebhookRequest) -> list[InboundChange]:
    """Normalise a verified delivery. Unknown or malformed payloads give an empty list (a
    field nested deeper than :data:`daemon.payloads.MAX_DEPTH` is logged)."""
    try:
        form = parse_form(request.body)
    except PayloadRejected as exc:
        log.warning("webhook.rejected", provider="mailchimp", reason=str(exc))
        return []
    kind = form.get("type")
    data = form.get("data")
    if not isinstance(kind, str) or not isinstance(data, dict):
        return []
    email = data.get("new_email") or data.get("email")
    if kind == "campaign":
        entity = None
        remote_id = str(data.get("id", ""))
    elif isinstance(email, str) and email:
        entity = Entity.CUSTOMER
        remote_id = subscriber_hash(email)
    else:
        return []
    if not remote_id:
        return []
    list_id = data.get("list_id")
    fields = (member_fields(email, _WEBHOOK_STATUS.get(kind), data.get("merges"))
              if entity is Entity.CUSTOMER else None)
    return [InboundChange(
        provider="mailchimp",
        entity=entity,
        remote_id=remote_id,
        change=_CHANGES.get(kind, "other"),
        dedupe_key=_dedupe_key(form),
        payload=form,
        occurred_at=_fired_at(form.get("fired_at")),
        account_id=list_id if isinstance(list_id, str) else None,
        event_type=kind,
        fields=fields,
    )]
