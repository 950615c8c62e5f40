"""Scenario 8: after OAuth connects, refreshes, key rotation and syncs by the running daemon,
no token, key or secret in clear anywhere syncd writes or answers."""

from __future__ import annotations

import asyncio
import json
import shutil
import tempfile
from pathlib import Path

import asyncpg
import httpx

from bench.proving.daemon import Daemon
from bench.proving.http_scenarios import API_ENV, JWT_SECRET, token
from bench.proving.registry import Context, Result, scenario
from bench.proving.sync_scenarios import FAST_QUEUE, wait_until
from daemon.db import init_connection
from daemon.queue import enqueue
from daemon.vault.keys import format_key, generate_key
from tests.acceptance.test_secret_scan import PROVIDERS, Session, emulators, oauth_venue

WEBHOOK_SECRETS = {"square": "sq-webhook-signature-key-prove-0123",
                   "quickbooks": "qbo-verifier-token-prove-0123"}


async def database_text(db_url: str) -> tuple[str, str]:
    """The whole database as text, and how it was read: ``pg_dump`` when installed, else a
    SELECT of every text, JSON and bytea column of every table."""
    pg_dump = shutil.which("pg_dump")
    if pg_dump is not None:
        proc = await asyncio.create_subprocess_exec(
            pg_dump, "--no-owner", "--dbname", db_url, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE)
        out, _ = await proc.communicate()
        if proc.returncode == 0:
            return out.decode(errors="replace"), "pg_dump"
    conn = await asyncpg.connect(db_url)
    try:
        columns = await conn.fetch(
            "SELECT table_schema, table_name, column_name FROM information_schema.columns "
            "WHERE table_schema NOT IN ('pg_catalog', 'information_schema') AND data_type IN "
            "('text', 'character varying', 'jsonb', 'json', 'bytea', 'ARRAY', 'character')")
        parts = []
        for c in columns:
            rows = await conn.fetch(
                f'SELECT "{c["column_name"]}"::text AS v FROM "{c["table_schema"]}".'
                f'"{c["table_name"]}"')
            parts += [r["v"] or "" for r in rows]
        return "\n".join(parts), "select"
    finally:
        await conn.close()


@scenario(8, "secret-scan", "OAuth connect, refresh, an API key, key rotation and syncs by "
          "the running daemon; then every log, a database dump, /metrics, the admin API and "
          "the status command are searched for every token, key and secret")
async def secret_scan(ctx: Context) -> Result:
    result = Result("secret-scan", fault_kinds="secrets searched for")
    db_url = await ctx.server.create_database()
    workdir = Path(tempfile.mkdtemp(prefix="syncd-prove-secrets-"))
    key1, key2 = generate_key(), generate_key()
    places: dict[str, str] = {}
    try:
        async with emulators() as emus, httpx.AsyncClient(timeout=30) as http:
            sample, clients = await oauth_venue(db_url, emus, http, customers=6, orders=3)
            env = {
                "SYNCD_DATABASE_URL": db_url, "SYNCD_LOG_FORMAT": "json",
                "SYNCD_LOG_LEVEL": "debug", "SYNCD_DATA_DIR": str(workdir / "data"),
                "SYNCD_ENCRYPTION_KEYS": format_key(1, key1),
                "SYNCD_SYNC_BASE_URLS": json.dumps({n: emus[n][0] for n in PROVIDERS}),
                "SYNCD_OAUTH_CLIENTS": json.dumps({n: {"client_id": c, "client_secret": s}
                                                   for n, (c, s) in clients.items()}),
                "SYNCD_WEBHOOK_SECRETS": json.dumps(WEBHOOK_SECRETS),
                **API_ENV,
            }
            run = Session(env)
            venue = str(sample.venue_id)
            codes: list[str] = []
            from urllib.parse import parse_qs, urlsplit
            for name in PROVIDERS:
                url = (await run("oauth", "url", venue, name)).strip()
                callback = (await http.get(url)).headers["Location"]
                codes += parse_qs(urlsplit(callback).query)["code"]
                await run("oauth", "complete", callback)
                if name != "mailchimp":  # Mailchimp tokens never expire nor refresh
                    await run("oauth", "refresh", venue, name)
            await run("credentials", "set", venue, "stripe", stdin=clients["stripe"][1])
            # Rotation: a new key version seals everything again, the old one stays to open.
            run.env["SYNCD_ENCRYPTION_KEYS"] = f"{format_key(2, key2)},{format_key(1, key1)}"
            await run("keys", "rotate")
            rotated = await run("keys", "status")
            daemon_env = {k: v for k, v in run.env.items()
                          if k not in ("SYNCD_DATABASE_URL", "SYNCD_DATA_DIR")}
            daemon = Daemon(db_url, workdir / "logs", replicas=1, http=True,
                            env={**daemon_env, **FAST_QUEUE})
            async with daemon:
                pool = await asyncpg.create_pool(db_url, min_size=1, max_size=2,
                                                 init=init_connection)
                assert pool is not None
                try:
                    for name in PROVIDERS:
                        await enqueue(pool, venue_id=sample.venue_id, provider=name,
                                      entity_type="all")

                    async def settled() -> bool:
                        return not await pool.fetchval(
                            "SELECT count(*) FROM sync_queue "
                            "WHERE status IN ('pending', 'processing')")

                    await wait_until(settled, 300, "the daemon's syncs")
                    jobs = {r["status"]: r["n"] for r in await pool.fetch(
                        "SELECT status, count(*) AS n FROM sync_queue GROUP BY status")}
                finally:
                    await pool.close()
                admin = {"Authorization": f"Bearer {token('platform_admin', None)}"}
                answers = []
                async with httpx.AsyncClient(base_url=daemon.url, timeout=30) as api:
                    for path in ("/metrics", "/readyz", "/healthz", "/api/v1/integrations",
                                 "/api/v1/queue", "/api/v1/dead-letters", "/api/v1/webhooks",
                                 *(f"/api/v1/venues/{venue}/integrations/{n}"
                                   for n in PROVIDERS)):
                        answers.append((await api.get(path, headers=admin)).text)
                places["metrics and admin API"] = "\n".join(answers)
            places["status command"] = (await run("status")) + await run("status", venue)
            places["syncd logs"] = daemon.logs()
            places["command output"] = "\n".join(run.output)
            secrets = {v for _, emulator in emus.values() for v in emulator.tokens._tokens}
            secrets |= set(codes) | {s for _, s in clients.values()}
            secrets |= {format_key(1, key1).partition(":")[2],
                        format_key(2, key2).partition(":")[2], JWT_SECRET}
            secrets |= set(WEBHOOK_SECRETS.values())
            dump, how = await database_text(db_url)
            places[f"database ({how})"] = dump
    finally:
        await ctx.server.drop_database(db_url)
    found = [(place, s) for place, text in places.items() for s in secrets if s in text]
    result.leaked = len(found)
    result.faults = len(secrets)
    result.load = f"4 providers, {len(secrets)} secrets, {len(places)} places"
    for place, secret in found[:6]:
        result.notes.append(f"in {place}: {secret[:6]}...")
    logs = places["syncd logs"] + places["command output"]
    used_vault = {json.loads(x).get("provider") for x in logs.splitlines()
                  if '"credentials.resolved"' in x and '"source": "vault"' in x}
    result.notes.append(f"daemon jobs {jobs}; syncs read the vault for {sorted(used_vault)}")
    return result.finish(
        ('"oauth.completed"' in logs and '"oauth.refreshed"' in logs,
         "no OAuth connect or refresh was logged"),
        ("version 1: 0 values" in rotated, f"the rotation left values under key 1: {rotated}"),
        (jobs.keys() == {"completed"}, f"the daemon's syncs did not all complete: {jobs}"),
        ("COPY public.oauth_tokens" in places.get("database (pg_dump)", "COPY public.oauth_tokens"),
         "the dump holds no token table"),
        (len(secrets) >= 3 * len(PROVIDERS), f"only {len(secrets)} secrets to search for"),
    )
