"""``syncd demo``: the daemon itself, end to end, against local provider emulators.

The demo runs ``syncd run`` (:class:`daemon.service.Daemon`) in this process, in a database
of its own on the Postgres syncd is configured with (``syncd_demo`` on the embedded one,
``<database>_demo`` next to a configured one), dropped and re-created on every run because
its emulators start empty every run too. So every run gives the same result, and the
configured database is never touched.

Each integration of the example config gets an emulator account of its own (two QuickBooks
venues are two companies, not one whose records they would adopt from each other). The
config's credential references are answered in this process only: ``env:NAME`` with the
emulator's test key, ``file:PATH`` with a file of that key in a secrets directory of the
demo's own (the config is copied there with its ``file:`` references pointing into it), so
every integration takes part.

What it shows, with a live line per integration and syncd's own logs in a file:

1. the leader applies the config and fires every schedule's catch-up tick (scheduled syncs
   on the config's lanes), while the demo queues a manual full sync of each integration on
   the HIGH lane: everything is new and is created once;
2. signed webhooks from the emulators (a customer edited at Stripe, a member unsubscribing
   at Mailchimp) are received, verified, stored and processed into inbound changes, and the
   withdrawn consent is held against later pushes;
3. three buyers and one event per venue change at the platform, and a manual sync of each
   integration on the CRITICAL lane sends only those.

Ctrl-C stops the daemon cleanly (a second Ctrl-C at once). Nothing talks to a real provider.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import re
import shutil
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TextIO
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import asyncpg
import httpx
from pydantic import SecretStr

from daemon.commands._config_args import add_config_dir, config_dir, print_problems
from daemon.commands._context import CliContext
from daemon.config import ConfigInvalid, load_config
from daemon.config.desired import DesiredIntegration, DesiredState
from daemon.credentials import EmulatorTokens
from daemon.db import Database, connect, describe_dsn
from daemon.errors import SyncdError
from daemon.logs import configure_logging
from daemon.plugins import Plugins
from daemon.provider import EmulatorSettings, Entity
from daemon.queue.enqueue import enqueue
from daemon.runtime import Runtime
from daemon.settings import Settings
from daemon.sync import SyncSettings
from daemon.systemd import Notifier
from daemon.testing.platform import create_platform_schema, seed_venue

_ENV_REF = re.compile(r"^env:(?P<name>[A-Za-z_][A-Za-z0-9_]*)$")
#: What the demo's emulators sign their webhooks with, and what it answers the config's
#: webhook secret references with.
_WEBHOOK_SECRET = "demo-webhook-secret"  # noqa: S105 - a local demo value, not a secret
#: Longest the demo waits for one of its phases.
#: How the summary names a count of each entity's records where "+s" would not do.
_NOUNS = {Entity.INVENTORY: "inventory counts"}
_PHASE_TIMEOUT = 300.0


class _Stopped(SyncdError):
    """The daemon stopped (Ctrl-C) before the demo was over."""


def register(subparsers: argparse._SubParsersAction[Any]) -> None:
    p = subparsers.add_parser(
        "demo",
        help="run the syncd daemon end to end against local provider emulators",
        description="In a database of its own (syncd_demo on the embedded Postgres, or "
        "<database>_demo next to SYNCD_DATABASE_URL's), re-created on every run: start "
        "local emulators of the providers, create sample platform data, and run the "
        "daemon (syncd run) on the config: scheduled and manual syncs of every "
        "integration, a signed webhook, then a few changed rows synced again. A live line "
        "per integration; syncd's logs go to a file.",
    )
    add_config_dir(p)
    p.add_argument("--events", type=int, default=10, help="sample events per venue")
    p.add_argument("--customers", type=int, default=50, help="sample customers per venue")
    p.add_argument("--orders", type=int, default=60, help="sample orders per venue")
    p.add_argument("--latency", type=float, default=0.0,
                   help="seconds of latency the emulators add to each request")
    p.add_argument("--log-file", type=Path, default=None,
                   help="where syncd's own log lines go (default: demo.log in syncd's data "
                   "directory)")
    p.add_argument("--port", type=int, default=0,
                   help="port of the daemon's HTTP server and status page (default: any free)")
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
async def _demo_database(ctx: CliContext) -> AsyncIterator[tuple[Settings, str]]:
    """The demo's own database, dropped and re-created; yields the settings naming it and
    the kind of server it is on ("embedded" or "configured")."""
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
            yield ctx.settings.model_copy(
                update={"database_url": SecretStr(_with_database(dsn, name))}), kind
        finally:
            await admin.close()
    finally:
        await server.close()


def _key(integration: DesiredIntegration) -> str:
    """The ``provider/venue-id`` an integration's emulator is found under."""
    return f"{integration.provider}/{integration.venue_id}"


@contextlib.asynccontextmanager
async def _emulators(plugins: Plugins, integrations: Sequence[DesiredIntegration],
                     latency: float) -> AsyncIterator[dict[str, str]]:
    """An emulator account per integration; yields ``{provider/venue-id: base URL}``."""
    # aiohttp, imported here rather than by every syncd command: a quarter of start-up.
    from daemon.testing.emulator import EmulatorServer

    async with contextlib.AsyncExitStack() as stack:
        urls: dict[str, str] = {}
        for integration in integrations:
            app = plugins.provider(integration.provider).emulator(EmulatorSettings(
                latency=latency, seed=7, webhook_secret=_WEBHOOK_SECRET))
            server = await stack.enter_async_context(EmulatorServer(app))
            urls[_key(integration)] = server.url
        yield urls


#: Options naming account resources that exist before syncd connects, and their kinds.
_PROVISIONED = {("mailchimp", "list_id"): "list", ("square", "location_id"): "location"}


async def _provision(integrations: Sequence[DesiredIntegration],
                     urls: Mapping[str, str]) -> None:
    """Create, at the emulators, the lists and locations the config's options name."""
    async with httpx.AsyncClient(timeout=10) as http:
        for integration in integrations:
            base = urls[_key(integration)]
            for (provider, option), kind in _PROVISIONED.items():
                value = integration.options.get(option)
                if provider != integration.provider or not value:
                    continue
                response = await http.post(f"{base}/_emulator/provision", json={
                    "kind": kind, "id": str(value),
                    "attributes": {"name": integration.venue_name}})
                response.raise_for_status()


async def _answer_references(integrations: Sequence[DesiredIntegration],
                             urls: Mapping[str, str], secrets_dir: Path,
                             configured_dir: Path) -> None:
    """Answer each credential reference with the emulator's test key: ``env:`` in this
    process's environment, ``file:`` with a file under ``secrets_dir``."""
    async with httpx.AsyncClient(timeout=10) as http:
        for integration in integrations:
            data = (await http.get(f"{urls[_key(integration)]}/_emulator/credentials")).json()
            for key, reference in integration.credentials.items():
                value = data.get(key) or data.get("api_key") or data.get("access_token")
                if key.endswith("webhook_secret"):
                    value = _WEBHOOK_SECRET
                if not value:
                    continue
                text = str(reference)
                match = _ENV_REF.match(text)
                if match is not None and match["name"] not in os.environ:
                    os.environ[match["name"]] = str(value)
                elif text.startswith("file:"):
                    target = secrets_dir / _relative_secret(text[5:], configured_dir)
                    target.parent.mkdir(parents=True, exist_ok=True)
                    target.write_text(str(value), encoding="utf-8")
                    target.chmod(0o600)


def _relative_secret(path: str, configured_dir: Path) -> str:
    """A ``file:`` reference's path, relative to the secrets directory."""
    candidate = Path(path)
    if candidate.is_absolute():
        with contextlib.suppress(ValueError):
            return str(candidate.relative_to(configured_dir))
        return candidate.name
    return path


def _copy_config(source: Path, target: Path, configured_dir: Path) -> None:
    """The config directory, its ``file:`` references made relative to the secrets
    directory (the demo's own)."""
    shutil.copytree(source, target, ignore=shutil.ignore_patterns(".git"))
    pattern = re.compile(r"file:(/[^\s#'\"]+)")
    for path in target.rglob("*.y*ml"):
        text = path.read_text(encoding="utf-8")
        fixed = pattern.sub(lambda m: "file:" + _relative_secret(m[1], configured_dir), text)
        if fixed != text:
            path.write_text(fixed, encoding="utf-8")


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


class LiveView:
    """One line per integration: on a terminal redrawn in place, else printed when done."""

    def __init__(self, labels: Mapping[tuple[str, str], str], stream: TextIO) -> None:
        self.labels = dict(labels)
        self.stream = stream
        self.tty = stream.isatty()
        self.shown = 0
        self.states: dict[tuple[str, str], str] = {}
        self.started = time.monotonic()

    def update(self, states: Mapping[tuple[str, str], str]) -> None:
        if not self.tty:
            return
        if self.shown:
            self.stream.write(f"\033[{self.shown}F")
        lines = [f"  {self.labels[k]:<44} {states.get(k, 'waiting')}\033[K"
                 for k in self.labels]
        lines.append(f"  ({time.monotonic() - self.started:.0f} s)\033[K")
        self.stream.write("\n".join(lines) + "\n")
        self.stream.flush()
        self.shown = len(lines)

    def clear(self) -> None:
        if self.tty and self.shown:
            self.stream.write(f"\033[{self.shown}F\033[J")
            self.stream.flush()
            self.shown = 0


_STATES = """
SELECT q.venue_id::text AS venue_id, q.provider,
       count(*) FILTER (WHERE q.status = 'processing') AS running,
       count(*) FILTER (WHERE q.status = 'pending' AND q.run_at <= now()) AS queued,
       count(*) FILTER (WHERE q.status = 'completed') AS done,
       count(*) FILTER (WHERE q.status IN ('failed', 'dead_letter')) AS failed
FROM sync_queue q WHERE q.queued_at >= $1 AND q.entity_type <> 'webhooks'
GROUP BY 1, 2
"""

_TOTALS = """
SELECT venue_id::text AS venue_id, provider, status, details
FROM sync_logs WHERE started_at >= $1 AND status <> 'running'
"""


async def _settle(pool: asyncpg.Pool, since: Any, daemon_task: asyncio.Task[None],
                  view: LiveView, expected: set[tuple[str, str]]) -> None:
    """Wait until every job queued since ``since`` that is due has ended."""
    deadline = time.monotonic() + _PHASE_TIMEOUT
    while True:
        if daemon_task.done():
            raise _Stopped("the demo was stopped")
        rows = await pool.fetch(_STATES, since)
        states: dict[tuple[str, str], str] = {}
        busy = False
        for r in rows:
            key = (r["venue_id"], r["provider"])
            if r["running"] or r["queued"]:
                busy = True
                states[key] = (f"syncing ({r['done']} of "
                               f"{r['done'] + r['running'] + r['queued']} jobs done)")
            else:
                states[key] = f"done ({r['done']} jobs" + (
                    f", {r['failed']} failed)" if r["failed"] else ")")
        view.update(states)
        if not busy and expected <= set(states):
            view.clear()
            return
        if time.monotonic() > deadline:
            raise SyncdError(f"the demo did not finish within {_PHASE_TIMEOUT:g} s")
        await asyncio.sleep(0.25)


async def _totals(pool: asyncpg.Pool, since: Any) -> dict[tuple[str, str], dict[str, Any]]:
    """Per integration: runs, failed runs and per-entity counts summed over its runs."""
    out: dict[tuple[str, str], dict[str, Any]] = {}
    for r in await pool.fetch(_TOTALS, since):
        entry = out.setdefault((r["venue_id"], r["provider"]),
                               {"runs": 0, "failed_runs": 0, "entities": {}})
        entry["runs"] += 1
        entry["failed_runs"] += 1 if r["status"] == "failed" else 0
        details = r["details"] if isinstance(r["details"], Mapping) else {}
        for name, counts in (details.get("entities") or {}).items():
            mine = entry["entities"].setdefault(name, {})
            for field in ("created", "updated", "failed"):
                mine[field] = mine.get(field, 0) + int(counts.get(field, 0))
    return out


def _report(title: str, totals: Mapping[tuple[str, str], Mapping[str, Any]],
            labels: Mapping[tuple[str, str], str]) -> int:
    """Print a phase's lines; the number of integrations with failures."""
    print(f"\n{title}")
    failures = 0
    for key, label in labels.items():
        entry = totals.get(key)
        if entry is None:
            print(f"  {label:<44} no run")
            failures += 1
            continue
        parts = []
        failed = entry["failed_runs"]
        for entity in (e.value for e in Entity):
            counts = entry["entities"].get(entity)
            if counts is None:
                continue
            failed += counts["failed"]
            parts.append(f"{entity}: {counts['created']} created, {counts['updated']} "
                         f"updated, {counts['failed']} failed")
        status = "completed" if not failed else "failed"
        failures += 1 if failed else 0
        print(f"  {label:<44} {status:<9} " + "; ".join(parts))
    return failures


async def _wait(check: Callable[[], Any], daemon_task: asyncio.Task[None], what: str,
                timeout: float = 60.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = await check()
        if value:
            return value
        if daemon_task.done():
            raise _Stopped(f"the demo stopped while waiting for {what}")
        if time.monotonic() > deadline:
            raise SyncdError(f"the demo timed out waiting for {what}")
        await asyncio.sleep(0.1)


async def _deliver(http: httpx.AsyncClient, base: str, target: str, collection: str,
                   change: str) -> None:
    """Have the emulator at ``base`` build and sign its webhook for a ``change`` of the
    first record of ``collection``, and deliver it to the daemon at ``target``."""
    records = (await http.get(f"{base}/_emulator/store")).json().get(collection, [])
    if not records:
        raise SyncdError(f"the demo's emulator at {base} holds no {collection} to change")
    record = sorted(records, key=lambda c: str(c.get("id")))[0]
    response = await http.post(f"{base}/_emulator/webhook", json={
        "collection": collection, "id": record["id"], "change": change, "url": target})
    response.raise_for_status()
    signed = response.json()  # the delivery the emulator built and signed
    # JSON unless the provider's delivery says otherwise (Mailchimp posts a form).
    headers = {"Content-Type": "application/json", **signed["headers"]}
    delivered = await http.post(target, content=signed["body"].encode("utf-8"),
                                headers=headers)
    if delivered.status_code >= 300:
        raise SyncdError(f"the daemon refused the demo's webhook: "
                         f"{delivered.status_code} {delivered.text[:200]}")


async def _webhooks(pool: asyncpg.Pool, daemon_url: str, urls: Mapping[str, str],
                    integrations: Sequence[DesiredIntegration],
                    daemon_task: asyncio.Task[None]) -> list[str]:
    """Signed webhooks from the emulators, each waited for until processed: a customer
    edited at Stripe, and a member unsubscribing at Mailchimp (signed with the venue's own
    secret); what happened to each."""
    sent: list[tuple[str, str, str]] = []
    stripe = next((i for i in integrations if i.provider == "stripe"), None)
    mailchimp = next((i for i in integrations
                      if i.provider == "mailchimp" and "webhook_secret" in i.credentials), None)
    async with httpx.AsyncClient(timeout=10) as http:
        if stripe is not None:
            target = f"{daemon_url}/webhooks/stripe/{stripe.venue_id}"
            await _deliver(http, urls[_key(stripe)], target, "customer", "updated")
            sent.append(("stripe", target, "a customer edited"))
        if mailchimp is not None:
            target = f"{daemon_url}/webhooks/mailchimp/{mailchimp.venue_id}"
            await _deliver(http, urls[_key(mailchimp)], target, "customer", "unsubscribed")
            sent.append(("mailchimp", target, "a member unsubscribed"))
    lines = []
    for provider, target, what in sent:
        async def processed(provider: str = provider) -> Any:
            return await pool.fetchval(
                "SELECT status FROM integration_webhooks WHERE provider = $1 "
                "AND status <> 'pending'", provider)

        status = await _wait(processed, daemon_task, f"the {provider} webhook to be processed")
        changes = await pool.fetchval(
            "SELECT count(*) FROM inbound_changes WHERE provider = $1 AND source = 'webhook'",
            provider)
        line = (f"{provider:<10} {what} -> {target.replace(daemon_url, '')}: signature "
                f"verified, stored, {status}; {changes} inbound change recorded")
        if provider == "mailchimp":
            holds = await pool.fetchval(
                "SELECT count(*) FROM consent_holds WHERE provider = 'mailchimp' "
                "AND state = 'withdrawn' AND lifted_at IS NULL")
            line += f"; consent held for {holds} member (no push re-subscribes it)"
        lines.append(line)
    return lines


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
    log_path: Path = args.log_file or ctx.settings.data_dir.parent / "demo.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("w", encoding="utf-8") as log_file:
        configure_logging(args.log_level or ctx.settings.log_level, "json", stream=log_file)
        print(f"logs: {log_path}")
        try:
            return await _demo(args, ctx, desired, enabled, directory)
        except _Stopped:
            print("\nstopped")
            return 130
        finally:
            # Nothing more goes to the file once it is closed.
            configure_logging("warning", args.log_format or ctx.settings.log_format)


async def _demo(args: argparse.Namespace, ctx: CliContext, desired: DesiredState,
                enabled: list[DesiredIntegration], directory: Path) -> int:
    from daemon.service import Daemon

    plugins = ctx.plugins
    labels = {(str(i.venue_id), i.provider): f"{i.provider:<10} {i.venue_name}"
              for i in enabled}
    async with (_demo_database(ctx) as (own, kind),
                _emulators(plugins, enabled, args.latency) as urls):
        with tempfile.TemporaryDirectory(prefix="syncd-demo-") as tmp:
            secrets_dir = Path(tmp) / "secrets"
            secrets_dir.mkdir(mode=0o700)
            configured_dir = Path(ctx.settings.secrets_dir)
            await _answer_references(enabled, urls, secrets_dir, configured_dir)
            _copy_config(directory, Path(tmp) / "config", configured_dir)
            await _provision(enabled, urls)
            settings = own.model_copy(update={
                "config_dir": Path(tmp) / "config", "secrets_dir": secrets_dir,
                "scheduler_catchup_spread_seconds": 0.0, "scheduler_poll_seconds": 0.5,
                "queue_poll_seconds": 0.2, "worker_concurrency": max(4, len(enabled)),
                "db_pool_max_size": max(4, len(enabled)) + 10,
                "health_interval_seconds": 5.0, "leader_retry_seconds": 0.5})
            runtime = Runtime(settings, plugins=plugins, sync=SyncSettings(base_urls=urls),
                              tokens=EmulatorTokens(urls))
            async with runtime.opened(migrate=True):
                where = ("the embedded Postgres" if kind == "embedded"
                         else "the configured server")
                print(f"database: {describe_dsn(runtime.database.dsn)} (the demo's own, "
                      f"re-created on {where})")
                await _seed(runtime.pool, desired, args)
                print(f"emulators: {len(urls)} accounts, one per integration, on 127.0.0.1")
                daemon = Daemon(runtime, host="127.0.0.1", port=args.port,
                                notifier=Notifier({}))
                task = asyncio.create_task(daemon.run(), name="demo.daemon")
                try:
                    return await _phases(runtime, daemon, task, desired=desired,
                                         enabled=enabled, urls=urls, labels=labels)
                finally:
                    daemon.stop()
                    with contextlib.suppress(Exception, asyncio.CancelledError):
                        await task


async def _seed(pool: asyncpg.Pool, desired: DesiredState, args: argparse.Namespace) -> None:
    async with pool.acquire() as conn:
        await create_platform_schema(conn)
        venues: dict[uuid.UUID, DesiredIntegration] = {}
        for integration in desired.integrations:
            venues.setdefault(integration.venue_id, integration)
        for venue_id, integration in venues.items():
            sample = await seed_venue(
                conn, venue_id=venue_id, name=integration.venue_name,
                venue_type=integration.venue_type, events=args.events,
                customers=args.customers, orders=args.orders)
            print(f"sample data: {sample.name}: {sample.events} events, "
                  f"{sample.customers} customers, {sample.orders} orders")


async def _phases(runtime: Runtime, daemon: Any, task: asyncio.Task[None], *,
                  desired: DesiredState, enabled: list[DesiredIntegration],
                  urls: Mapping[str, str], labels: Mapping[tuple[str, str], str]) -> int:
    pool = runtime.pool

    async def listening() -> Any:
        return daemon.url

    url = await _wait(listening, task, "the daemon to listen")
    print(f"daemon: serving on {url}; status page {url}/ (also /readyz, /metrics)")

    async def applied() -> Any:
        count = await pool.fetchval("SELECT count(*) FROM integration_configs")
        return count == len(desired.integrations)

    await _wait(applied, task, "the leader to apply the config")
    print(f"config applied by the leader: {len(desired.integrations)} integrations; "
          "every schedule's catch-up tick fires on its lane")
    view = LiveView(labels, sys.stdout)
    expected = set(labels)
    since = await pool.fetchval("SELECT '-infinity'::timestamptz")
    async with pool.acquire() as conn:
        for integration in enabled:
            await enqueue(conn, venue_id=integration.venue_id,
                          provider=integration.provider, entity_type="all", lane="HIGH",
                          payload={"full": True, "trigger": "demo"},
                          correlation_id="demo:first")
    print("\nfirst sync: scheduled jobs on their lanes and a manual HIGH-lane sync per "
          "integration, side by side")
    await _settle(pool, since, task, view, expected)
    failures = _report("first sync (everything is new, each record created once):",
                       await _totals(pool, since), labels)

    received = await pool.fetchval("SELECT now()")
    webhooks = await _webhooks(pool, url, urls, enabled, task)
    if webhooks:
        print("\nwebhooks from the emulators:")
        for line in webhooks:
            print(f"  {line}")
        # The sync the webhook queued ends before the platform changes, so that the
        # second sync below is the one that sends the changes.
        await _settle(pool, received, task, view, set())

    async with pool.acquire() as conn:
        for venue_id in {i.venue_id for i in desired.integrations}:
            await _touch(conn, venue_id)
    second = await pool.fetchval("SELECT now()")
    async with pool.acquire() as conn:
        for integration in enabled:
            await enqueue(conn, venue_id=integration.venue_id,
                          provider=integration.provider, entity_type="all",
                          lane="CRITICAL", payload={"trigger": "demo"},
                          correlation_id="demo:second")
    await _settle(pool, second, task, view, expected)
    failures += _report("second sync (per venue, 3 buyers' phone numbers and 1 event's "
                        "description changed; a manual CRITICAL-lane sync):",
                        await _totals(pool, second), labels)

    print("\nrecords at the emulators:")
    async with httpx.AsyncClient(timeout=10) as http:
        for integration in enabled:
            store = (await http.get(f"{urls[_key(integration)]}/_emulator/store")).json()
            sizes = ", ".join(f"{len(store.get(e.value, []))} {_NOUNS.get(e, e.value + 's')}"
                              for e in Entity if e.value in store)
            print(f"  {labels[(str(integration.venue_id), integration.provider)]:<44} "
                  f"{sizes}")
    print(f"\ndone: every integration synced, then only what changed ({failures} with "
          "failures); the daemon stops with the demo (`syncd run` keeps one going)")
    return 1 if failures else 0
