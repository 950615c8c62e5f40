"""``syncd disconnect VENUE PROVIDER``: revoke the grant, delete stored secrets, mark it."""

from __future__ import annotations

import argparse
from typing import Any

from daemon.commands._context import CliContext
from daemon.oauth.connect import OAuthService
from daemon.oauth.disconnect import disconnect

__all__ = ["register"]


def register(subparsers: argparse._SubParsersAction[Any]) -> None:
    p = subparsers.add_parser(
        "disconnect", help="revoke an integration's grant, delete its stored secrets",
        description="Revoke VENUE's PROVIDER grant at the provider where it offers a revoke "
        "endpoint, delete the stored OAuth token and API keys, and mark the integration "
        "disconnected. References in YAML (env:, file:) are not touched.")
    p.add_argument("venue", metavar="VENUE", help="venue id (uuid) or venue name")
    p.add_argument("provider", metavar="PROVIDER")
    p.add_argument("--no-revoke", action="store_true",
                   help="delete without asking the provider to revoke (it is unreachable)")
    p.set_defaults(func=run)


async def run(args: argparse.Namespace, ctx: CliContext) -> int:
    vault = ctx.runtime.vault
    async with ctx.database(migrate=True) as db:
        service = OAuthService(db.pool, vault, ctx.plugins, ctx.settings,
                               base_urls=ctx.runtime.base_urls)
        done = await disconnect(service, args.venue, args.provider,
                                revoke_grant=not args.no_revoke)
    what = {"revoked": f"grant revoked at {done.provider}",
            "already revoked": f"{done.provider} no longer knew the grant",
            "no revoke endpoint": f"{done.provider} offers no revoke endpoint; remove the app "
                                  "in its settings to revoke the grant there",
            "skipped": "grant not revoked (--no-revoke)",
            "no grant": "no stored OAuth grant"}[done.revocation]
    print(f"disconnected {done.provider} for venue {done.venue_id}: {what}; deleted "
          f"{done.tokens_deleted} token(s) and {done.keys_deleted} API key(s)")
    return 0
