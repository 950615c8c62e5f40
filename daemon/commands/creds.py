"""``syncd credentials set VENUE PROVIDER``: store an API key, sealed, after testing it."""

from __future__ import annotations

import argparse
import getpass
import sys
from typing import Any

import httpx

from daemon.commands._context import CliContext
from daemon.credential_scope import CredentialScope
from daemon.errors import SyncdError
from daemon.logs import get_logger
from daemon.oauth.lifecycle import mark_connected
from daemon.plugins import UnknownProvider
from daemon.provider import ClientContext, Credentials
from daemon.sql import queries
from daemon.vault.store import account_facts
from daemon.vault.tokens import TokenVault

__all__ = ["register"]

log = get_logger("syncd.credentials")
_Q = queries("vault.sql")


def register(subparsers: argparse._SubParsersAction[Any]) -> None:
    p = subparsers.add_parser(
        "credentials", help="store an integration's API key in the vault",
        description="Secrets are never command-line arguments: `set` reads the key from "
        "standard input (prompting without echo on a terminal).")
    sub = p.add_subparsers(dest="credentials_command", metavar="ACTION", required=True)
    s = sub.add_parser(
        "set", help="read an API key from standard input, test it, store it encrypted",
        description="Read the API key of VENUE's PROVIDER integration from standard input, "
        "check it with the provider's connection test, and store it sealed in the vault. "
        "A stored key is used instead of the integration's env:/file: reference. Nothing is "
        "stored when the provider refuses it.")
    s.add_argument("venue", metavar="VENUE", help="venue id (uuid) or venue name")
    s.add_argument("provider", metavar="PROVIDER")
    s.set_defaults(func=run_set)


def _read_secret() -> str:
    tty = sys.stdin.isatty()
    value = (getpass.getpass("API key (not echoed): ") if tty else sys.stdin.read()).strip()
    if not value:
        raise SyncdError("no API key on standard input (pipe it in, e.g. "
                         "`syncd credentials set VENUE PROVIDER < keyfile`)")
    if "\n" in value:
        raise SyncdError("standard input holds more than one line; give only the key")
    return value


async def run_set(args: argparse.Namespace, ctx: CliContext) -> int:
    try:
        provider = ctx.plugins.provider(args.provider)
    except UnknownProvider as exc:
        raise SyncdError(str(exc)) from None
    if "api_key" not in provider.capabilities.credential_keys:
        raise SyncdError(f"{provider.name} does not take an API key; connect it with "
                         f"`syncd oauth url {args.venue} {provider.name}`")
    value = _read_secret()
    vault = ctx.runtime.vault
    base_urls = ctx.runtime.base_urls
    async with ctx.database(migrate=True) as db, db.pool.acquire() as conn:
        row = await conn.fetchrow(_Q["integration_for_venue"], args.venue, provider.name)
        if row is None:
            raise SyncdError(f"no {provider.name} integration for venue {args.venue}: add it "
                             "to the venue's YAML and run `syncd apply` first")
        venue_id, environment = row["venue_id"], row["environment"]
        options = {k: v for k, v in (row["options"] or {}).items()
                   if k not in ("base_url", "delete_policy")}
        try:
            opts: Any = provider.options_model().model_validate(options)
        except Exception:
            opts = options
        base_url = base_urls.get(provider.name) or (row["options"] or {}).get("base_url")
        facts = account_facts(row["credentials"] or {},
                              CredentialScope.from_settings(ctx.settings))
        credentials = Credentials(api_key=value, account=facts)
        async with httpx.AsyncClient(timeout=30.0) as http:
            client = provider.client(ClientContext(
                venue_id=venue_id, credentials=credentials, options=opts, http=http,
                base_url=base_url,
                environment="sandbox" if environment == "sandbox" else "production"))
            try:
                status = await client.test_connection()
            except Exception as exc:
                raise SyncdError(f"could not test the key with {provider.name}: "
                                 f"{type(exc).__name__}; nothing was stored") from None
            finally:
                await client.aclose()
        if not status.ok:
            log.warning("credentials.rejected", venue_id=venue_id, provider=provider.name)
            raise SyncdError(f"{provider.name} refused the key: "
                             f"{status.detail or 'connection test failed'}; nothing was stored")
        async with conn.transaction():
            await TokenVault(vault).save_api_key(conn, venue_id, provider.name,
                                                 environment=environment, value=value)
            await mark_connected(conn, venue_id, provider.name)
    log.info("credentials.stored", venue_id=venue_id, provider=provider.name,
             environment=environment, key_version=vault.keys.current_version)
    account = f" (account {status.account_id})" if status.account_id else ""
    print(f"stored the {provider.name} API key of venue {row['venue_name'] or venue_id} "
          f"({environment}), sealed with key version {vault.keys.current_version}; "
          f"connection test passed{account}")
    return 0
