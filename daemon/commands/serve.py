"""``syncd serve``: the HTTP server on its own (webhooks, health, readiness, metrics)."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING, Any

from aiohttp import web

from daemon.commands._context import CliContext
from daemon.logs import get_logger
from daemon.runtime import Runtime

if TYPE_CHECKING:
    from daemon.oauth.connect import OAuthService

log = get_logger("syncd.http")


def register(subparsers: argparse._SubParsersAction[Any]) -> None:
    p = subparsers.add_parser(
        "serve",
        help="serve webhooks, the admin API, the status page, /healthz, /readyz and /metrics",
        description="Serve the HTTP app: POST /webhooks/{provider} and "
        "/webhooks/{provider}/{venue} (verified, stored once, processed in the background by "
        "`syncd worker`), the admin API under /api/v1, the status page at / (sign in at "
        "/login), OAuth connect at /oauth/{provider}/start and /callback, GET /healthz, "
        "/readyz and /metrics. SIGTERM stops accepting, lets open requests finish and stores "
        "what is waiting. See docs/http.md.",
    )
    p.add_argument("--host", default=None,
                   help="address to listen on (default: SYNCD_HTTP_HOST or 127.0.0.1)")
    p.add_argument("--port", type=_port, default=None,
                   help="port to listen on, 0 for any free one (default: SYNCD_HTTP_PORT or 8080)")
    p.set_defaults(func=run)


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"port must be 0 to 65535, not {value}")
    return value


async def run(args: argparse.Namespace, ctx: CliContext) -> int:
    from daemon.http.server import serve

    settings = ctx.settings
    host = args.host or settings.http_host
    port = settings.http_port if args.port is None else args.port

    def listening(url: str) -> None:
        print(f"syncd serve: listening on {url}", flush=True)

    async with ctx.open(migrate=True) as runtime:
        await serve(build_app(runtime), settings, host=host, port=port,
                    on_listening=listening)
    print("syncd serve: stopped", file=sys.stderr, flush=True)
    return 0


def build_app(runtime: Runtime, **extra: Any) -> web.Application:
    """The HTTP app over the runtime's objects (``syncd serve`` and ``syncd run``)."""
    from daemon.credential_scope import CredentialScope
    from daemon.http import create_app
    from daemon.http.secrets import ReferenceWebhookSecrets

    secrets = ReferenceWebhookSecrets(runtime.pool,
                                      scope=CredentialScope.from_settings(runtime.settings))
    extra.setdefault("oauth", _oauth_service(runtime))
    return create_app(pool=runtime.pool, providers=runtime.providers,
                      settings=runtime.settings, secrets=secrets,
                      plugin_failures=[f.name for f in runtime.plugins.failed], **extra)


def _oauth_service(runtime: Runtime) -> OAuthService | None:
    """The OAuth connect service, or None (routes answer 503) when the vault has no keys."""
    from daemon.oauth.connect import OAuthService
    from daemon.vault.keys import VaultError

    try:
        vault = runtime.vault
    except VaultError as exc:
        log.warning("http.oauth_unavailable", reason=str(exc))
        return None
    return OAuthService(runtime.pool, vault, runtime.plugins, runtime.settings,
                        base_urls=runtime.base_urls)
