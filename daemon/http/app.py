"""The aiohttp application: webhooks, health, readiness, metrics, the admin API, browser
sign-in, OAuth connect and the status page.

:func:`create_app` takes objects already built by the caller (the composition root:
``syncd serve`` or ``syncd run``) and owns only what it creates itself, the webhook store's
writer and the loop-lag monitor, which it stops on ``app.on_cleanup``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import asyncpg
from aiohttp import web
from prometheus_client import CollectorRegistry

from daemon.http import state
from daemon.http.api import api_app
from daemon.http.auth import TokenVerifier
from daemon.http.connect import routes as connect_routes
from daemon.http.health import LoopLagMonitor, readiness
from daemon.http.metrics import CONTENT_TYPE_LATEST, exposition, observe_events
from daemon.http.metrics import REGISTRY as HTTP_REGISTRY
from daemon.http.secrets import VenueWebhookSecrets
from daemon.http.session import VERIFIER
from daemon.http.session import routes as session_routes
from daemon.http.status import routes as status_routes
from daemon.http.store import WebhookStore
from daemon.http.webhooks import routes as webhook_routes
from daemon.logs import get_logger
from daemon.oauth.connect import OAuthService
from daemon.provider import Provider
from daemon.queue.maintenance import refresh_depth
from daemon.queue.metrics import REGISTRY as QUEUE_REGISTRY
from daemon.settings import Settings
from daemon.sql import queries

__all__ = ["create_app", "handler_args"]

log = get_logger("syncd.http")
_Q = queries("webhooks.sql")


def handler_args(settings: Settings) -> dict[str, int]:
    """Request parser limits for :class:`aiohttp.web.AppRunner` (header sizes and counts)."""
    return {"max_field_size": settings.http_max_field_size,
            "max_line_size": settings.http_max_field_size,
            "max_headers": settings.http_max_headers}


def create_app(
    *,
    pool: asyncpg.Pool,
    providers: Mapping[str, Provider],
    settings: Settings,
    secrets: VenueWebhookSecrets,
    plugin_failures: Sequence[str] = (),
    registries: Sequence[CollectorRegistry] = (QUEUE_REGISTRY, HTTP_REGISTRY),
    oauth: OAuthService | None = None,
) -> web.Application:
    """The HTTP application over already-built objects.

    ``oauth``: the service behind ``/oauth/{provider}/start`` and ``/callback`` (built on the
    vault); without it those routes answer 503 and everything else works.
    """
    app = web.Application(client_max_size=settings.webhook_max_body_bytes)
    app[state.POOL] = pool
    app[state.PROVIDERS] = dict(providers)
    app[state.PLUGIN_FAILURES] = tuple(plugin_failures)
    app[state.SETTINGS] = settings
    app[state.SECRETS] = secrets
    app[state.STORE] = WebhookStore(pool, batch_size=settings.webhook_batch_size,
                                    max_pending=settings.webhook_max_pending)
    app[state.LOOP_LAG] = LoopLagMonitor()
    app[state.REGISTRIES] = tuple(registries)
    app[state.OAUTH] = oauth
    verifier = TokenVerifier(settings)
    app[VERIFIER] = verifier
    app.add_routes([
        web.get("/healthz", healthz),
        web.get("/readyz", readyz),
        web.get("/metrics", metrics),
        *webhook_routes(),
        *session_routes(),
        *connect_routes(),
        *status_routes(),
    ])
    app.add_subapp("/api/v1", api_app(verifier))
    app.on_startup.append(_start)
    app.on_cleanup.append(_cleanup)
    return app


async def _start(app: web.Application) -> None:
    app[state.LOOP_LAG].start()


async def _cleanup(app: web.Application) -> None:
    await app[state.STORE].close()
    await app[state.LOOP_LAG].stop()


async def healthz(request: web.Request) -> web.Response:
    """Alive, and the event loop is not stuck."""
    monitor = request.app[state.LOOP_LAG]
    lag = monitor.current_lag()
    limit = request.app[state.SETTINGS].health_max_loop_lag_seconds
    ok = monitor.running and lag <= limit
    body = {"status": "ok" if ok else "unhealthy", "loop_lag_seconds": round(lag, 4)}
    return web.json_response(body, status=200 if ok else 503)


async def readyz(request: web.Request) -> web.Response:
    """Database reachable, migrations current, config revision applied, plugins loaded."""
    app = request.app
    providers: Mapping[str, Provider] = app[state.PROVIDERS]
    checks = await readiness(app[state.POOL], config_dir=app[state.SETTINGS].config_dir,
                             providers=providers,
                             plugin_failures=app[state.PLUGIN_FAILURES])
    ok = all(c.ok for c in checks)
    body: dict[str, object] = {
        "status": "ready" if ok else "not ready",
        "checks": {c.name: {"ok": c.ok, "detail": c.detail} for c in checks},
        "reasons": [f"{c.name}: {c.detail}" for c in checks if not c.ok]}
    leader = app.get(state.LEADER)
    if leader is not None:
        body["leader"] = leader()
    return web.json_response(body, status=200 if ok else 503)


async def metrics(request: web.Request) -> web.Response:
    """Every registry in Prometheus text format, with the database-backed gauges (queue
    depth, stored webhook events) read first; without a database they keep their last values.
    """
    pool = request.app[state.POOL]
    try:
        async with pool.acquire(timeout=2.0) as conn:
            await refresh_depth(conn)
            observe_events(await conn.fetch(_Q["webhook_counts"], timeout=2.0))
    except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        log.warning("http.metrics_stale", error=type(exc).__name__)
    registries: Sequence[CollectorRegistry] = request.app[state.REGISTRIES]
    body = exposition(registries)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})
