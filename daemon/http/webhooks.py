"""``POST /webhooks/{provider}`` and ``/webhooks/{provider}/{venue}``: verify, store once, 2xx.

A delivery is answered in this order: an unknown provider or venue is 404; a body over the
limit is 413; a content type the provider does not send is 415; a delivery that fails the
provider's own verification (signature, timestamp tolerance) or, for providers that may use
one, the URL token, is 401; a body that is not the JSON or form document it claims to be is
400. Only then is the raw delivery stored (group commit, see :mod:`daemon.http.store`), and
only after that commit is it answered 200. A delivery of an event already stored answers 200
and stores nothing. Nothing provider-specific happens here beyond verification: the events
are processed in the background by the queue's CRITICAL lane.

Secrets: ``/webhooks/{provider}`` verifies with the app-level secret from settings
(``SYNCD_WEBHOOK_SECRETS``); ``/webhooks/{provider}/{venue}`` with the venue's own
(``credentials.webhook_secret``), or, for providers in ``SYNCD_WEBHOOK_URL_TOKEN_PROVIDERS``
whose venue config gives no signing secret, with ``?token=`` compared in constant time to
``credentials.token``. Responses never say which check failed; the log does, without secrets.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
import uuid
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl

from aiohttp import web

from daemon.http import state
from daemon.http.metrics import observe_webhook
from daemon.http.secrets import WebhookSecretUnavailable
from daemon.http.store import Delivery, StoreRejected, StoreUnavailable
from daemon.logs import get_logger
from daemon.provider import Provider, WebhookRequest, WebhookVerdict

__all__ = ["notification_url", "routes"]

log = get_logger("syncd.http")

_JSON_TYPES = frozenset({"application/json", "text/json"})
_FORM_TYPE = "application/x-www-form-urlencoded"
#: Headers never stored with an event (credentials a proxy or client might add).
_UNSTORED_HEADERS = frozenset({"authorization", "proxy-authorization", "cookie", "x-api-key"})
#: Headers a proxy may legitimately repeat; any other repeated header is refused.
_REPEATABLE_HEADERS = frozenset({"x-forwarded-for", "forwarded", "via"})
_MAX_EVENT_ID = 200


def routes() -> list[web.RouteDef]:
    return [
        web.post("/webhooks/{provider}", receive),
        web.post("/webhooks/{provider}/{venue}", receive),
        web.get("/webhooks/{provider}", validate_url),
        web.get("/webhooks/{provider}/{venue}", validate_url),
    ]


def _json(code: int, **body: Any) -> web.Response:
    return web.json_response(body, status=code)


#: The answers to a stored delivery, encoded once: most requests get one of these.
_ANSWERS = {outcome: json.dumps({"status": outcome}).encode() for outcome in
            ("stored", "duplicate")}
_JSON_HEADERS = {"Content-Type": "application/json; charset=utf-8"}


def _answer(outcome: str) -> web.Response:
    return web.Response(body=_ANSWERS[outcome], headers=_JSON_HEADERS)


def notification_url(request: web.Request, public_base_url: str | None) -> str:
    """The URL the provider delivered to, as it registered it (Square signs it)."""
    if public_base_url:
        return public_base_url.rstrip("/") + request.raw_path
    return str(request.url)


def _provider(request: web.Request) -> Provider | None:
    return request.app[state.PROVIDERS].get(request.match_info["provider"])


async def validate_url(request: web.Request) -> web.Response:
    """The GET a provider sends when a webhook URL is registered (Mailchimp): 200, no secret."""
    if _provider(request) is None:
        return _json(404, error="unknown provider")
    return _json(200, ok=True)


_REPEATABLE_RAW = frozenset(name.encode("latin-1") for name in _REPEATABLE_HEADERS)


def _repeated_header(request: web.Request) -> str | None:
    seen: set[bytes] = set()
    for raw_name, _ in request.raw_headers:
        key = raw_name.lower()
        if key in seen and key not in _REPEATABLE_RAW:
            return key.decode("latin-1")
        seen.add(key)
    return None


def _payload_json(body: bytes, content_type: str) -> str | None:
    """The body as a JSON document for the ``payload`` column, or None when it is not one."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        return None
    if content_type in _JSON_TYPES:
        try:
            doc = json.loads(text)
        except (ValueError, RecursionError):
            return None
        return text if isinstance(doc, dict | list) else None
    try:
        pairs = parse_qsl(text, keep_blank_values=True, strict_parsing=True)
    except ValueError:
        return None
    return json.dumps(dict(pairs))


def _stored_headers(request: web.Request) -> str:
    return json.dumps({k: v for k, v in request.headers.items()
                       if k.lower() not in _UNSTORED_HEADERS})


async def _verify(request: web.Request, provider: Provider, venue: uuid.UUID | None,
                  delivery: WebhookRequest) -> WebhookVerdict | None:
    """The verdict on a delivery; None when the venue has no such integration."""
    settings = request.app[state.SETTINGS]
    if venue is None:
        secret = settings.webhook_secrets.get(provider.name)
        if secret is None:
            return WebhookVerdict(ok=False, reason="no app-level webhook secret is configured")
        return provider.verify_webhook(delivery, secret.get_secret_value())
    secrets = await request.app[state.SECRETS].venue_webhook_secrets(venue, provider.name)
    if secrets is None:
        return None
    if secrets.signing_secret:
        return provider.verify_webhook(delivery, secrets.signing_secret)
    if secrets.url_token and provider.name in settings.webhook_url_token_providers:
        given = request.query.get("token", "")
        if hmac.compare_digest(given.encode("utf-8"), secrets.url_token.encode("utf-8")):
            return WebhookVerdict(ok=True)
        return WebhookVerdict(ok=False, reason="missing or wrong URL token")
    return WebhookVerdict(ok=False, reason="the venue's config gives no webhook secret")


def _event_id(verdict: WebhookVerdict, body: bytes) -> str:
    given = verdict.event_id
    if given and len(given) <= _MAX_EVENT_ID:
        return given
    return "sha256:" + hashlib.sha256(body).hexdigest()


async def receive(request: web.Request) -> web.Response:
    started = time.perf_counter()
    provider = _provider(request)
    if provider is None:
        observe_webhook("unknown", "not_found")
        return _json(404, error="unknown provider")
    name = provider.name
    venue: uuid.UUID | None = None
    if "venue" in request.match_info:
        try:
            venue = uuid.UUID(request.match_info["venue"])
        except ValueError:
            observe_webhook(name, "unknown_venue")
            return _json(404, error="unknown venue")
    settings = request.app[state.SETTINGS]
    if (request.content_length or 0) > settings.webhook_max_body_bytes:
        observe_webhook(name, "too_large")
        return _json(413, error="body too large")
    repeated = _repeated_header(request)
    if repeated is not None:
        observe_webhook(name, "malformed")
        return _json(400, error="repeated header")
    content_type = request.content_type
    if content_type not in _JSON_TYPES and content_type != _FORM_TYPE:
        observe_webhook(name, "unsupported_media_type")
        return _json(415, error="unsupported content type")
    try:
        body = await request.read()
    except web.HTTPRequestEntityTooLarge:
        observe_webhook(name, "too_large")
        return _json(413, error="body too large")
    received_at = datetime.now(UTC)
    delivery = WebhookRequest(headers=request.headers, body=body,
                              url=notification_url(request, settings.public_base_url),
                              received_at=received_at)
    try:
        verdict = await _verify(request, provider, venue, delivery)
    except WebhookSecretUnavailable as exc:
        log.error("webhook.secret_unavailable", provider=name, venue_id=str(venue),
                  error=str(exc))
        observe_webhook(name, "unavailable")
        return _json(503, error="temporarily unavailable")
    if verdict is None:
        observe_webhook(name, "unknown_venue")
        return _json(404, error="unknown venue")
    if not verdict.ok:
        log.warning("webhook.refused", provider=name, venue_id=str(venue) if venue else None,
                    reason=verdict.reason)
        observe_webhook(name, "unauthorized")
        return _json(401, error="verification failed")
    payload = _payload_json(body, content_type)
    if payload is None:
        observe_webhook(name, "malformed")
        return _json(400, error=f"body is not a valid {content_type} document")
    event = Delivery(provider=name, external_id=_event_id(verdict, body), venue_id=venue,
                     headers_json=_stored_headers(request), payload_json=payload, body=body,
                     content_type=content_type, received_at=received_at)
    try:
        outcome = await request.app[state.STORE].store(event)
    except StoreRejected:
        observe_webhook(name, "malformed")
        return _json(400, error="body cannot be stored as sent")
    except StoreUnavailable:
        observe_webhook(name, "unavailable")
        return _json(503, error="temporarily unavailable")
    observe_webhook(name, outcome, time.perf_counter() - started)
    return _answer(outcome)
