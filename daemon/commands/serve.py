"""``syncd serve``: the HTTP server on its own (webhooks, health, readiness, metrics)."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING, Any

from daemon.commands._context import CliContext
from daemon.logs import get_logger

if TYPE_CHECKING:
    import asyncpg

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


def _oauth_service(pool: asyncpg.Pool, ctx: CliContext) -> OAuthService | None:
    """The OAuth connect service, or None (routes answer 503) when the vault has no keys."""
    from daemon.oauth.connect import OAuthService
    from daemon.sync.settings import SyncSettings
    from daemon.vault.keys import VaultError
    from daemon.vault.provider import load_vault

    try:
        vault = load_vault(ctx.plugins, ctx.settings)
    except VaultError as exc:
        log.warning("http.oauth_unavailable", reason=str(exc))
        return None
    return OAuthService(pool, vault, ctx.plugins, ctx.settings,
                        base_urls=SyncSettings().base_urls)


async def run(args: argparse.Namespace, ctx: CliContext) -> int:
    from daemon.credential_scope import CredentialScope
    from daemon.http import create_app
    from daemon.http.secrets import ReferenceWebhookSecrets
    from daemon.http.server import serve

    settings = ctx.settings
    plugins = ctx.plugins
    host = args.host or settings.http_host
    port = settings.http_port if args.port is None else args.port
    failures = [f.name for f in plugins.failed]

    def listening(url: str) -> None:
        print(f"syncd serve: listening on {url}", flush=True)

    async with ctx.database(migrate=True) as db:
        secrets = ReferenceWebhookSecrets(db.pool,
                                          scope=CredentialScope.from_settings(settings))
        app = create_app(pool=db.pool, providers=plugins.providers, settings=settings,
                         secrets=secrets, plugin_failures=failures,
                         oauth=_oauth_service(db.pool, ctx))
        await serve(app, settings, host=host, port=port, on_listening=listening)
    print("syncd serve: stopped", file=sys.stderr, flush=True)
    return 0
