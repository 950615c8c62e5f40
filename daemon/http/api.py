"""The admin API under ``/api/v1``, scoped by venue (see :mod:`daemon.http.auth`).

A venue admin sees only the venues in their token: another venue's integration answers
exactly as a missing one does (404), and lists leave other venues out. The OpenAPI
description is served, without authentication, at ``/api/v1/openapi.json``.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Awaitable, Callable, Mapping
from datetime import date, datetime
from typing import Any

import asyncpg
from aiohttp import web

from daemon import pause as pause_ops
from daemon.errors import SyncdError
from daemon.http import state
from daemon.http.auth import AuthFailed, Forbidden, NotConfigured, Principal, TokenVerifier
from daemon.http.openapi import OPENAPI
from daemon.http.session import VERIFIER
from daemon.logs import get_logger
from daemon.pause import check_reason
from daemon.provider import Entity
from daemon.queue.admin import dlq_replay, overview
from daemon.queue.enqueue import enqueue
from daemon.sql import queries

__all__ = ["PRINCIPAL", "VERIFIER", "api_app"]

log = get_logger("syncd.http")
_Q = queries("api.sql")

#: The authenticated principal of a request (set by the middleware).
PRINCIPAL = web.RequestKey("syncd.principal", Principal)
_PUBLIC = frozenset({"/api/v1/openapi.json"})
_WEBHOOK_STATUSES = frozenset({"pending", "processing", "processed", "failed", "ignored"})

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _default(value: Any) -> Any:
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, datetime | date):
        return value.isoformat()
    raise TypeError(f"cannot serialise {type(value).__name__}")


def _json(body: Any, status: int = 200, headers: Mapping[str, str] | None = None
          ) -> web.Response:
    return web.Response(text=json.dumps(body, default=_default), status=status,
                        content_type="application/json", headers=headers)


def _error(status: int, message: str, headers: Mapping[str, str] | None = None) -> web.Response:
    return _json({"error": message}, status, headers)


@web.middleware
async def _authenticate(request: web.Request, handler: Handler) -> web.StreamResponse:
    if request.path in _PUBLIC:
        return await handler(request)
    verifier = request.config_dict[VERIFIER]
    try:
        principal = verifier.principal(request.headers.get("Authorization"))
    except NotConfigured as exc:
        return _error(503, str(exc))
    except AuthFailed as exc:
        log.info("api.unauthenticated", reason=str(exc), path=request.path)
        return _error(401, str(exc), {"WWW-Authenticate": 'Bearer error="invalid_token"'})
    except Forbidden as exc:
        return _error(403, str(exc))
    request[PRINCIPAL] = principal
    try:
        return await handler(request)
    except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        log.error("api.database_unavailable", path=request.path, error=type(exc).__name__)
        return _error(503, "the database is unavailable; try again")


def _principal(request: web.Request) -> Principal:
    return request[PRINCIPAL]


def _integration(row: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "venue_id": row["venue_id"], "venue_name": row["venue_name"],
        "provider": row["provider"], "enabled": row["enabled"],
        "environment": row["environment"], "status": row["status"],
        "health": row["health_status"], "last_sync_at": row["last_sync_at"],
        "last_error": row["last_error"], "last_error_at": row["last_error_at"],
        "failure_count": row["failure_count"],
        "paused": row["paused_at"] is not None, "paused_at": row["paused_at"],
        "paused_by": row["paused_by"], "pause_reason": row["pause_reason"],
    }


def _actor(principal: Principal) -> str:
    """Who acts, as recorded (a job's correlation id, who paused): the token's subject,
    bounded and without the one character Postgres text cannot hold."""
    return f"api:{principal.subject.replace(chr(0), '')}"[:200]


def _unexpected_query(request: web.Request, *allowed: str) -> web.Response | None:
    """400 for a query parameter the route does not take, one given twice, or a value
    Postgres text cannot hold (a NUL character)."""
    names = list(request.query.keys())
    for name in names:
        if name not in allowed:
            return _error(400, f"unknown query parameter {name[:50]!r}")
        if names.count(name) > 1:
            return _error(400, f"query parameter {name!r} given more than once")
        if "\x00" in request.query[name]:
            return _error(400, f"query parameter {name!r} holds a NUL character")
    return None


def _uuid(text: str | None) -> uuid.UUID | None:
    if text is None:
        return None
    try:
        return uuid.UUID(text)
    except ValueError:
        return None


async def list_integrations(request: web.Request) -> web.Response:
    if (refused := _unexpected_query(request, "venue")) is not None:
        return refused
    principal = _principal(request)
    venue_text = request.query.get("venue")
    venue = _uuid(venue_text)
    if venue_text is not None and venue is None:
        return _error(400, "venue must be a venue id (a UUID)")
    pool: asyncpg.Pool = request.config_dict[state.POOL]
    rows = await pool.fetch(_Q["integrations"], principal.venue_filter(), venue)
    return _json({"integrations": [_integration(r) for r in rows]})


async def _visible(request: web.Request) -> tuple[Mapping[str, Any] | None, uuid.UUID | None]:
    """The integration named by the path if this principal may see it, else None (404)."""
    venue = _uuid(request.match_info["venue"])
    if venue is None or not _principal(request).may_see(venue):
        return None, None
    pool: asyncpg.Pool = request.config_dict[state.POOL]
    row = await pool.fetchrow(_Q["integration"], venue, request.match_info["provider"])
    return row, venue


async def get_integration(request: web.Request) -> web.Response:
    if (refused := _unexpected_query(request)) is not None:
        return refused
    row, venue = await _visible(request)
    if row is None or venue is None:
        return _error(404, "no such integration")
    pool: asyncpg.Pool = request.config_dict[state.POOL]
    syncs = await pool.fetch(_Q["recent_syncs"], venue, row["provider"], 20)
    return _json({"integration": _integration(row), "recent_syncs": [
        {**dict(s), "errors": s["errors"] if isinstance(s["errors"], list) else []}
        for s in syncs]})


async def sync_now(request: web.Request) -> web.Response:
    if (refused := _unexpected_query(request)) is not None:
        return refused
    row, venue = await _visible(request)
    if row is None or venue is None:
        return _error(404, "no such integration")
    body = await _json_object(request)
    if isinstance(body, web.Response):
        return body
    entity = body.get("entity", "all")
    full = body.get("full", False)
    if entity != "all" and entity not in {e.value for e in Entity}:
        return _error(400, "entity must be " + ", ".join(e.value for e in Entity) + " or all")
    if not isinstance(full, bool):
        return _error(400, "full must be true or false")
    if not row["enabled"]:
        return _error(409, "the integration is disabled")
    if row["paused_at"] is not None:
        return _error(409, "the integration is paused; resume it first")
    pool: asyncpg.Pool = request.config_dict[state.POOL]
    principal = _principal(request)
    job_id = await enqueue(pool, venue_id=venue, provider=row["provider"], entity_type=entity,
                           operation="reconcile" if full else "sync", lane="HIGH",
                           payload={"source": "api"}, correlation_id=_actor(principal))
    log.info("api.sync_requested", venue_id=str(venue), provider=row["provider"],
             entity=entity, full=full, job_id=job_id, subject=principal.subject)
    return _json({"job_id": job_id, "coalesced": job_id is None, "lane": "HIGH"}, 202)


async def _json_object(request: web.Request) -> dict[str, Any] | web.Response:
    """The request's JSON object body ({} when there is none), or a 400."""
    if not request.can_read_body:
        return {}
    try:
        body = await request.json()
    except (ValueError, UnicodeDecodeError):
        return _error(400, "the body must be a JSON object")
    if not isinstance(body, dict):
        return _error(400, "the body must be a JSON object")
    return body


async def pause_integration(request: web.Request) -> web.Response:
    """Pause: no schedules fire, queued jobs wait, sync now is refused (daemon.pause)."""
    if (refused := _unexpected_query(request)) is not None:
        return refused
    row, venue = await _visible(request)
    if row is None or venue is None:
        return _error(404, "no such integration")
    body = await _json_object(request)
    if isinstance(body, web.Response):
        return body
    reason = body.get("reason")
    if reason is not None and not isinstance(reason, str):
        return _error(400, "reason must be a string")
    try:
        reason = check_reason(reason)
    except SyncdError as exc:
        return _error(400, str(exc))
    return await _paused_answer(request, venue, row["provider"], pause=True, reason=reason)


async def resume_integration(request: web.Request) -> web.Response:
    """Resume a paused integration: its queued jobs can run, its schedules fire again."""
    if (refused := _unexpected_query(request)) is not None:
        return refused
    row, venue = await _visible(request)
    if row is None or venue is None:
        return _error(404, "no such integration")
    body = await _json_object(request)
    if isinstance(body, web.Response):
        return body
    return await _paused_answer(request, venue, row["provider"], pause=False, reason=None)


async def _paused_answer(request: web.Request, venue: uuid.UUID, provider: str, *,
                         pause: bool, reason: str | None) -> web.Response:
    pool: asyncpg.Pool = request.config_dict[state.POOL]
    actor = _actor(_principal(request))
    if pause:
        done = await pause_ops.pause(pool, venue, provider, by=actor, reason=reason)
    else:
        done = await pause_ops.resume(pool, venue, provider, by=actor)
    row = await pool.fetchrow(_Q["integration"], venue, provider)
    if done is None or row is None:  # removed by a config apply meanwhile
        return _error(404, "no such integration")
    return _json({"integration": _integration(row), "changed": done.changed})


async def list_webhooks(request: web.Request) -> web.Response:
    if (refused := _unexpected_query(request, "provider", "status", "limit")) is not None:
        return refused
    provider = request.query.get("provider")
    status = request.query.get("status")
    if status is not None and status not in _WEBHOOK_STATUSES:
        return _error(400, "status must be one of " + ", ".join(sorted(_WEBHOOK_STATUSES)))
    limit = _limit(request)
    if isinstance(limit, web.Response):
        return limit
    pool: asyncpg.Pool = request.config_dict[state.POOL]
    rows = await pool.fetch(_Q["webhook_events"], _principal(request).venue_filter(),
                            provider, status, limit)
    return _json({"events": [dict(r) for r in rows]})


def _limit(request: web.Request, default: int = 100) -> int | web.Response:
    try:
        limit = int(request.query.get("limit", str(default)))
    except ValueError:
        return _error(400, "limit must be a whole number")
    if not 1 <= limit <= 1000:
        return _error(400, "limit must be 1 to 1000")
    return limit


async def queue_overview(request: web.Request) -> web.Response:
    """Depth by lane and status and running jobs: every venue's, so platform admins only."""
    if (refused := _unexpected_query(request)) is not None:
        return refused
    if not _principal(request).is_platform_admin:
        return _error(403, "the queue overview is for platform admins")
    pool: asyncpg.Pool = request.config_dict[state.POOL]
    async with pool.acquire() as conn:
        view = await overview(conn)
    return _json(view.as_json())


async def list_dead_letters(request: web.Request) -> web.Response:
    if (refused := _unexpected_query(request, "provider", "limit")) is not None:
        return refused
    limit = _limit(request, 50)
    if isinstance(limit, web.Response):
        return limit
    pool: asyncpg.Pool = request.config_dict[state.POOL]
    rows = await pool.fetch(_Q["dead_letters"], _principal(request).venue_filter(),
                            request.query.get("provider"), limit)
    return _json({"dead_letters": [dict(r) for r in rows]})


async def replay_dead_letter(request: web.Request) -> web.Response:
    if (refused := _unexpected_query(request)) is not None:
        return refused
    try:
        job_id = int(request.match_info["id"])
    except ValueError:
        return _error(404, "no such dead letter")
    if not 1 <= job_id < 2**63:
        return _error(404, "no such dead letter")
    pool: asyncpg.Pool = request.config_dict[state.POOL]
    principal = _principal(request)
    async with pool.acquire() as conn:
        row = await conn.fetchrow(_Q["dead_letter"], job_id)
        if row is None or not principal.may_see(row["venue_id"]):
            return _error(404, "no such dead letter")
        replayed = await dlq_replay(conn, ids=[job_id])
    log.info("api.dead_letter_replayed", job_id=job_id, subject=principal.subject,
             replayed=bool(replayed))
    return _json({"replayed": replayed})


_INBOUND_STATUSES = frozenset({"pending", "applied", "ignored", "failed", "dead_letter"})


async def list_inbound_changes(request: web.Request) -> web.Response:
    """Provider changes bound for the platform, newest first, with their outcomes."""
    if (refused := _unexpected_query(request, "provider", "status", "limit")) is not None:
        return refused
    status = request.query.get("status")
    if status is not None and status not in _INBOUND_STATUSES:
        return _error(400, "status must be one of " + ", ".join(sorted(_INBOUND_STATUSES)))
    limit = _limit(request)
    if isinstance(limit, web.Response):
        return limit
    pool: asyncpg.Pool = request.config_dict[state.POOL]
    rows = await pool.fetch(queries("inbound.sql")["api_list"],
                            _principal(request).venue_filter(),
                            request.query.get("provider"), status, limit)
    return _json({"changes": [dict(r) for r in rows]})


async def openapi(request: web.Request) -> web.Response:
    return _json(OPENAPI)


def api_app(verifier: TokenVerifier) -> web.Application:
    """The ``/api/v1`` sub-application."""
    app = web.Application(middlewares=[_authenticate])
    app[VERIFIER] = verifier
    app.add_routes([
        web.get("/openapi.json", openapi),
        web.get("/integrations", list_integrations),
        web.get("/venues/{venue}/integrations/{provider}", get_integration),
        web.post("/venues/{venue}/integrations/{provider}/sync", sync_now),
        web.post("/venues/{venue}/integrations/{provider}/pause", pause_integration),
        web.post("/venues/{venue}/integrations/{provider}/resume", resume_integration),
        web.get("/webhooks", list_webhooks),
        web.get("/queue", queue_overview),
        web.get("/dead-letters", list_dead_letters),
        web.get("/inbound-changes", list_inbound_changes),
        web.post("/dead-letters/{id}/replay", replay_dead_letter),
    ])
    return app
