"""``syncd demo``: syncd end to end on embedded defaults, against local provider emulators.

The demo runs in a database of its own on the Postgres syncd is configured with (the
embedded one when none is): ``syncd_demo`` on the embedded server, ``<database>_demo`` next
to a configured one. It drops and re-creates that database at the start of every run,
because its emulators start empty every run too: links, watermarks and sample rows kept
from an earlier run would point into emulators that no longer exist, so a second run would
send nothing (or fail on a reused remote id) instead of showing a first sync. A database of
its own also keeps the demo's venues, sample platform tables and config revisions out of
the database a real syncd uses. Every run therefore gives the same result.

In that database the demo applies the config directory, creates the platform's sample
tables and rows for each venue the config declares, starts the four provider emulators on
loopback ports, and syncs every enabled integration against them. It then changes a few
source rows and syncs again to show that only what changed is sent. The per-batch log lines
are left out (warnings and errors still show) unless ``--log-level`` or
``SYNCD_LOG_LEVEL`` asks for them.

Credentials stay references: the config's ``env:NAME`` references are answered, in this
process only, with the emulators' test keys, and OAuth integrations take the emulators'
test tokens. Nothing here talks to a real provider.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import uuid
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import asyncpg
import httpx
from pydantic import SecretStr

from daemon.commands._config_args import add_config_dir, config_dir, print_problems
from daemon.commands._context import CliContext
from daemon.config import ConfigInvalid, load_config
from daemon.config.desired import DesiredState
from daemon.credentials import EmulatorTokens, ReferenceCredentialStore
from daemon.db import Database, connect, describe_dsn
from daemon.errors import SyncdError
from daemon.logs import configure_logging
from daemon.migrate import apply_migrations
from daemon.plugins import Plugins
from daemon.provider import EmulatorSettings, Entity
from daemon.reconcile import apply_desired, git_commit
from daemon.source import SourceReader
from daemon.sync import SyncEngine, SyncError, SyncSettings
from daemon.testing.platform import create_platform_schema, seed_venue

_ENV_REF = re.compile(r"^env:(?P<name>[A-Za-z_][A-Za-z0-9_]*)$")


def register(subparsers: argparse._SubParsersAction[Any]) -> None:
    p = subparsers.add_parser(
        "demo",
        help="run syncd end to end against local provider emulators",
        description="In a database of its own (syncd_demo on the embedded Postgres, or "
        "<database>_demo next to SYNCD_DATABASE_URL's), re-created on every run: apply the "
        "config, create sample platform data, start local emulators of the providers and "
        "sync every enabled integration; then change a few rows and sync again.",
    )
    add_config_dir(p)
    p.add_argument("--events", type=int, default=20, help="sample events per venue")
    p.add_argument("--customers", type=int, default=100, help="sample customers per venue")
    p.add_argument("--orders", type=int, default=150, help="sample orders per venue")
    p.add_argument("--latency", type=float, default=0.0,
                   help="seconds of latency the emulators add to each request")
    p.set_defaults(func=run)


#: Held (on the server's own database) while a demo runs: a second demo on the same server
#: would drop the first one's database.
_DEMO_LOCK = "SELECT pg_try_advisory_lock(hashtext('syncd.demo'))"


def _demo_database_name(dsn: str) -> str:
    """``syncd_demo`` on a server's default database, else ``<database>_demo``."""
    database = describe_dsn(dsn).rpartition("/")[2]
    return "syncd_demo" if database in ("", "postgres") else f"{database}_demo"[:63]


def _with_database(dsn: str, name: str) -> str:
    """``dsn`` naming the database ``name`` instead (in its path and any ``dbname=``)."""
    parts = urlsplit(dsn)
    query = [(k, name if k == "dbname" else v) for k, v in parse_qsl(parts.query, True)]
    return urlunsplit(parts._replace(path=f"/{name}", query=urlencode(query)))


@contextlib.asynccontextmanager
async def _demo_database(ctx: CliContext) -> AsyncIterator[tuple[Database, str]]:
    """The demo's own database, dropped, re-created and migrated; yields it and the kind of
    server it is on ("embedded" or "configured")."""
    server = Database(ctx.settings)
    try:
        dsn = await server.resolve()
        kind = "embedded" if server.embedded is not None else "configured"
        name = _demo_database_name(dsn)
        admin = await connect(dsn, timeout=ctx.settings.db_connect_timeout)
        try:
            if not await admin.fetchval(_DEMO_LOCK):
                raise SyncdError(f"another syncd demo is running on {describe_dsn(dsn)}")
            try:
                await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
                await admin.execute(f'CREATE DATABASE "{name}"')
            except asyncpg.PostgresError as exc:
                raise SyncdError(
                    f"the demo runs in a database of its own, {name}, and cannot re-create "
                    f"it on {describe_dsn(dsn)}: {exc}") from None
            own = ctx.settings.model_copy(
                update={"database_url": SecretStr(_with_database(dsn, name))})
            async with Database(own) as db:
                async with db.pool.acquire() as conn:
                    await apply_migrations(conn)
                yield db, kind
        finally:
            await admin.close()
    finally:
        await server.close()


@contextlib.asynccontextmanager
async def _emulators(
    plugins: Plugins, providers: set[str], latency: float
) -> AsyncIterator[dict[str, str]]:
    """Start an emulator per provider; yields ``{provider: base URL}``."""
    # aiohttp, imported here rather than by every syncd command: a quarter of start-up.
    from daemon.testing.emulator import EmulatorServer

    async with contextlib.AsyncExitStack() as stack:
        urls: dict[str, str] = {}
        for name in sorted(providers):
            app = plugins.provider(name).emulator(EmulatorSettings(latency=latency, seed=7))
            server = await stack.enter_async_context(EmulatorServer(app))
            urls[name] = server.url
        yield urls


#: Options naming account resources that exist before syncd connects, and their kinds.
_PROVISIONED = {("mailchimp", "list_id"): "list", ("square", "location_id"): "location"}


async def _provision(desired: DesiredState, urls: dict[str, str]) -> None:
    """Create, at the emulators, the lists and locations the config's options name."""
    async with httpx.AsyncClient(timeout=10) as http:
        for integration in desired.integrations:
            base = urls.get(integration.provider)
            for (provider, option), kind in _PROVISIONED.items():
                value = integration.options.get(option)
                if base is None or provider != integration.provider or not value:
                    continue
                response = await http.post(f"{base}/_emulator/provision", json={
                    "kind": kind, "id": str(value),
                    "attributes": {"name": integration.venue_name}})
                response.raise_for_status()


async def _answer_env_references(desired: DesiredState, urls: dict[str, str]) -> list[str]:
    """Set each ``env:NAME`` credential the config references to the emulator's test key."""
    answered: list[str] = []
    async with httpx.AsyncClient(timeout=10) as http:
        for integration in desired.integrations:
            base = urls.get(integration.provider)
            if base is None:
                continue
            data = (await http.get(f"{base}/_emulator/credentials")).json()
            for key, reference in integration.credentials.items():
                match = _ENV_REF.match(str(reference))
                if match is None or match["name"] in os.environ:
                    continue
                value = data.get(key) or data.get("api_key") or data.get("access_token")
                if key.endswith("webhook_secret"):
                    value = "demo-webhook-secret"
                if value:
                    os.environ[match["name"]] = str(value)
                    answered.append(match["name"])
    return answered


def _line(report: Any) -> str:
    parts = []
    for e in report.entities:
        frozen = f", {e.frozen} frozen" if e.frozen else ""
        parts.append(f"{e.entity.value}: {e.scanned} read, {e.created} created, "
                     f"{e.updated} updated, {e.unchanged} unchanged, {e.failed} failed"
                     f"{frozen}")
    what = "dry run" if report.dry_run else report.status
    return (f"  {report.provider:<10} {what:<9} {report.api_calls:>4} API calls  "
            + "; ".join(parts))


async def run(args: argparse.Namespace, ctx: CliContext) -> int:
    directory = config_dir(args, ctx)
    plugins = ctx.plugins
    print(f"plugins: {', '.join(sorted(plugins.providers)) or 'none'}")
    for failure in plugins.failed:
        print(f"  failed to load {failure.name}: {failure.error}")
    try:
        desired = load_config(directory, plugins)
    except ConfigInvalid as exc:
        print_problems(exc, as_json=False)
        return 1
    enabled = [i for i in desired.integrations if i.enabled]
    print(f"config: {directory} ({len(desired.integrations)} integrations, "
          f"{len(enabled)} enabled)")
    if args.log_level is None and not os.environ.get("SYNCD_LOG_LEVEL"):
        configure_logging("warning", args.log_format or ctx.settings.log_format)
    async with _demo_database(ctx) as (db, kind):
        where = "the embedded Postgres" if kind == "embedded" else "the configured server"
        print(f"database: {describe_dsn(db.dsn)} (the demo's own, re-created on "
              f"{where}), migrated")
        async with db.pool.acquire() as conn:
            result = await apply_desired(
                conn, desired, source="demo", commit=git_commit(directory),
                max_disable_share=ctx.settings.config_max_disable_share)
            counts = result.plan.counts()
            print(f"config applied: {counts['create']} created, {counts['update']} updated, "
                  f"{counts['disable']} disabled")
            await create_platform_schema(conn)
            venues: dict[uuid.UUID, Any] = {}
            for integration in desired.integrations:
                venues.setdefault(integration.venue_id, integration)
            for venue_id, integration in venues.items():
                sample = await seed_venue(
                    conn, venue_id=venue_id, name=integration.venue_name,
                    venue_type=integration.venue_type, events=args.events,
                    customers=args.customers, orders=args.orders)
                print(f"sample data: {sample.name}: {sample.events} events, "
                      f"{sample.customers} customers, {sample.orders} orders")
        async with _emulators(plugins, {i.provider for i in enabled}, args.latency) as urls:
            for name, url in urls.items():
                print(f"emulator: {name} at {url}")
            await _answer_env_references(desired, urls)
            await _provision(desired, urls)
            settings = SyncSettings(base_urls=urls)
            engine = SyncEngine(
                db.pool, plugins.providers,
                ReferenceCredentialStore(db.pool, EmulatorTokens(urls)),
                source=SourceReader(db.pool), settings=settings)
            failures = 0
            print("\nfirst sync (everything is new):")
            for integration in enabled:
                failures += await _sync(engine, integration, f"{integration.venue_name}")
            async with db.pool.acquire() as conn:
                for venue_id in venues:
                    await _touch(conn, venue_id)
            print("\nsecond sync (per venue, 3 buyers' phone numbers and 1 event's "
                  "description changed):")
            for integration in enabled:
                failures += await _sync(engine, integration, f"{integration.venue_name}")
            async with httpx.AsyncClient(timeout=10) as http:
                print("\nrecords at the emulators:")
                for name, url in urls.items():
                    store = (await http.get(f"{url}/_emulator/store")).json()
                    sizes = ", ".join(f"{len(store.get(e.value, []))} {e.value}s"
                                      for e in Entity if e.value in store)
                    print(f"  {name:<10} {sizes}")
    return 1 if failures else 0


async def _touch(conn: Any, venue_id: uuid.UUID) -> None:
    """Change a few source rows the way the platform would (with ``updated_at``)."""
    await conn.execute(
        "UPDATE customers SET phone = '+1 555 0100 ' || substr(id::text, 1, 4), "
        "updated_at = now() WHERE id IN (SELECT id FROM customers WHERE venue_id = $1 "
        "ORDER BY id LIMIT 3)", venue_id)
    await conn.execute(
        "UPDATE events SET description = coalesce(description, '') || ' Doors at 7pm.', "
        "updated_at = now() WHERE id IN (SELECT id FROM events WHERE venue_id = $1 "
        "ORDER BY id LIMIT 1)", venue_id)


def _missing_files(integration: Any) -> list[str]:
    """``file:`` credential references whose files this machine does not have."""
    return [str(ref)[5:] for ref in integration.credentials.values()
            if str(ref).startswith("file:") and not os.path.exists(str(ref)[5:])]


async def _sync(engine: SyncEngine, integration: Any, label: str) -> int:
    missing = _missing_files(integration)
    if missing:
        print(f"  {integration.provider:<10} skipped: its credentials are files this machine "
              f"lacks ({', '.join(missing)})  [{label}]")
        return 0
    try:
        report = await engine.run(str(integration.venue_id), integration.provider)
    except SyncError as exc:
        print(f"  {integration.provider:<10} {label}: cannot sync: {exc}")
        return 1
    print(f"{_line(report)}  [{label}]")
    if report.error:
        print(f"    error: {report.error}")
    for err in report.errors[:3]:
        print(f"    failed {err.entity} {err.local_id}: {err.error}")
    return 0 if report.status == "completed" else 1
