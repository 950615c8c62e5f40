"""``syncd oauth url|complete|refresh``: connect an integration through OAuth from a terminal.

The same :class:`~daemon.oauth.connect.OAuthService` serves the HTTP app's
``GET /oauth/{provider}/start`` and ``/oauth/{provider}/callback``.
"""

from __future__ import annotations

import argparse
import getpass
from typing import Any

from daemon.commands._context import CliContext
from daemon.errors import SyncdError
from daemon.oauth.connect import OAuthService
from daemon.oauth.refresh import Refresher
from daemon.sql import queries
from daemon.vault.tokens import TokenVault

__all__ = ["register"]

_Q = queries("vault.sql")


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


def register(subparsers: argparse._SubParsersAction[Any]) -> None:
    p = subparsers.add_parser(
        "oauth", help="connect an integration through OAuth (authorize URL, callback)",
        description="Connect VENUE's PROVIDER integration: `url` prints the provider's "
        "authorize address; open it, consent, and give the address the provider sent you "
        "back to to `complete`.")
    sub = p.add_subparsers(dest="oauth_command", metavar="ACTION", required=True)
    u = sub.add_parser("url", help="print the authorize URL (valid ten minutes, used once)")
    u.add_argument("venue", metavar="VENUE", help="venue id (uuid) or venue name")
    u.add_argument("provider", metavar="PROVIDER")
    u.add_argument("--user", default=None,
                   help="who asks (default: the login name); `complete` must be the same")
    u.set_defaults(func=run_url)
    c = sub.add_parser(
        "complete", help="finish from the callback URL the provider redirected to",
        description="Check the callback's state, exchange its code, store the tokens "
        "encrypted, mark the integration connected and queue its first sync (HIGH lane).")
    c.add_argument("url", metavar="URL", help="the whole callback address, with ?code=&state=")
    c.add_argument("--venue", default=None,
                   help="refuse unless the state was issued for this venue (id or name)")
    c.add_argument("--user", default=None, help="who completes (default: the login name)")
    c.set_defaults(func=run_complete)
    r = sub.add_parser("refresh", help="refresh a stored token now (single-flight)")
    r.add_argument("venue", metavar="VENUE", help="venue id (uuid) or venue name")
    r.add_argument("provider", metavar="PROVIDER")
    r.set_defaults(func=run_refresh)


async def run_url(args: argparse.Namespace, ctx: CliContext) -> int:
    vault = ctx.runtime.vault
    async with ctx.database(migrate=True) as db:
        service = OAuthService(db.pool, vault, ctx.plugins, ctx.settings,
                               base_urls=ctx.runtime.base_urls)
        request = await service.start(args.venue, args.provider, user=args.user or _user())
    print(request.url)
    return 0


async def run_complete(args: argparse.Namespace, ctx: CliContext) -> int:
    vault = ctx.runtime.vault
    async with ctx.database(migrate=True) as db:
        service = OAuthService(db.pool, vault, ctx.plugins, ctx.settings,
                               base_urls=ctx.runtime.base_urls)
        done = await service.complete_url(args.url, user=args.user or _user(),
                                          venue=args.venue)
    facts = [f"account {done.account_id}"] if done.account_id else []
    if done.scopes:
        facts.append("scopes " + " ".join(done.scopes))
    facts.append(f"token expires {done.expires_at:%Y-%m-%d %H:%M} UTC" if done.expires_at
                 else "token does not expire")
    queued = (f"first sync queued on the HIGH lane as job {done.job_id}" if done.job_id
              else "first sync joined a pending job")
    print(f"connected {done.provider} for venue {done.venue_id} ({'; '.join(facts)}); {queued}")
    return 0


async def run_refresh(args: argparse.Namespace, ctx: CliContext) -> int:
    vault = ctx.runtime.vault
    async with ctx.database(migrate=True) as db:
        row = await db.pool.fetchrow(_Q["integration_for_venue"], args.venue, args.provider)
        if row is None:
            raise SyncdError(f"no {args.provider} integration for venue {args.venue}")
        async with db.pool.acquire() as conn:
            current = await TokenVault(vault).load_token(conn, row["venue_id"], args.provider)
        if current is None:
            raise SyncdError(f"the {args.provider} integration of venue {args.venue} has no "
                             "stored OAuth token; connect it with `syncd oauth url`")
        refresher = Refresher(db.pool, vault, ctx.plugins, ctx.settings,
                              base_urls=ctx.runtime.base_urls)
        fresh = await refresher.refresh(row["venue_id"], args.provider,
                                        stale=current.access_token)
    if fresh is None:
        raise SyncdError(f"the {args.provider} token of venue {args.venue} could not be "
                         "refreshed; the integration is now in error: connect it again")
    when = (f"; expires {fresh.expires_at:%Y-%m-%d %H:%M} UTC" if fresh.expires_at else "")
    print(f"refreshed the {args.provider} token of venue {row['venue_id']}{when}")
    return 0
