"""No secret in clear anywhere: connect, refresh and sync against every OAuth emulator, store
an API key, then search every log line and a ``pg_dump`` for every token, code and key."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from urllib.parse import parse_qs, urlsplit

import asyncpg
import httpx
import pytest

from daemon.db import init_connection
from daemon.plugins import load_plugins
from daemon.provider import EmulatorSettings
from daemon.testing.emulator import Emulator, EmulatorServer
from daemon.testing.platform import SampleVenue, create_platform_schema, seed_venue
from daemon.vault.keys import format_key, generate_key
from tests.acceptance.conftest import SYNCD

PROVIDERS = ("square", "quickbooks", "mailchimp", "stripe")
KEY = generate_key()
CLIENTS = {"square": ("sq0idp-emulator", "sq0csp-emulator-secret"),
           "quickbooks": ("emulated-client-id", "emulated-client-secret"),
           "mailchimp": ("mc-emulated-client", "mc-emulated-client-secret-value")}


@asynccontextmanager
async def emulators() -> AsyncIterator[dict[str, tuple[str, Emulator]]]:
    plugins = load_plugins(list(PROVIDERS))
    async with AsyncExitStack() as stack:
        found = {}
        for name in PROVIDERS:
            server = await stack.enter_async_context(EmulatorServer(
                plugins.provider(name).emulator(EmulatorSettings(seed=11))))
            assert server.emulator is not None
            found[name] = (server.url, server.emulator)
        yield found


class Session:
    """Runs syncd as an operator would and keeps everything it wrote."""

    def __init__(self, env: dict[str, str]) -> None:
        self.env = env
        self.output: list[str] = []

    async def __call__(self, *args: str, stdin: str | None = None) -> str:
        base = {k: v for k, v in os.environ.items() if not k.startswith("SYNCD_")}
        proc = await asyncio.create_subprocess_exec(
            SYNCD, *args, env={**base, **self.env}, stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        out, err = await proc.communicate(stdin.encode() if stdin else None)
        text = out.decode() + err.decode()
        self.output.append(text)
        assert proc.returncode == 0, f"syncd {' '.join(args[:2])}: {text[-3000:]}"
        return out.decode()


async def oauth_venue(db_url: str, emus: dict[str, tuple[str, Emulator]],
                      http: httpx.AsyncClient, *, customers: int, orders: int
                      ) -> tuple[SampleVenue, dict[str, tuple[str, str]]]:
    """The platform's tables with a sample venue, and an integration of it with each
    provider waiting for OAuth (options from its emulator's account); the venue and the
    OAuth clients (Stripe's is the platform account's key)."""
    platform_key = (await http.get(emus["stripe"][0] + "/_emulator/credentials")
                    ).json()["api_key"]
    conn = await asyncpg.connect(db_url)
    await init_connection(conn)
    try:
        await create_platform_schema(conn)
        sample = await seed_venue(conn, customers=customers, events=2, orders=orders)
        plugins = load_plugins(list(PROVIDERS))
        for name in PROVIDERS:
            account = (await http.get(emus[name][0] + "/_emulator/credentials")
                       ).json()["account"]
            fields = plugins.provider(name).options_model().model_fields
            await conn.execute(
                "INSERT INTO integration_configs (venue_id, provider, venue_name, "
                "credentials, options) VALUES ($1, $2, $3, $4, $5)", sample.venue_id, name,
                sample.name, {"token": "oauth"},
                {k: v for k, v in account.items() if k in fields})
    finally:
        await conn.close()
    return sample, {**CLIENTS, "stripe": ("ca_emulator", platform_key)}


async def test_connect_refresh_and_sync_leave_no_secret_in_logs_or_database(
        db_url: str) -> None:
    pg_dump = shutil.which("pg_dump")
    if pg_dump is None:
        pytest.skip("pg_dump is not installed, so the database cannot be dumped and scanned")
    async with emulators() as emus, httpx.AsyncClient(timeout=30) as http:
        sample, clients = await oauth_venue(db_url, emus, http, customers=4, orders=2)
        run = Session({
            "SYNCD_DATABASE_URL": db_url, "SYNCD_ENCRYPTION_KEYS": format_key(1, KEY),
            "SYNCD_LOG_FORMAT": "json", "SYNCD_LOG_LEVEL": "debug",
            "SYNCD_SYNC_BASE_URLS": json.dumps({n: emus[n][0] for n in PROVIDERS}),
            "SYNCD_OAUTH_CLIENTS": json.dumps({n: {"client_id": c, "client_secret": s}
                                               for n, (c, s) in clients.items()}),
        })
        venue = str(sample.venue_id)
        codes = []
        for name in PROVIDERS:
            url = (await run("oauth", "url", venue, name)).strip()
            callback = (await http.get(url)).headers["Location"]
            codes += parse_qs(urlsplit(callback).query)["code"]
            await run("oauth", "complete", callback)
            if name != "mailchimp":  # Mailchimp tokens never expire and cannot be refreshed
                await run("oauth", "refresh", venue, name)
            await run("sync", venue, name)
        await run("credentials", "set", venue, "stripe", stdin=clients["stripe"][1])
        await run("keys", "status")
        await run("status", venue)

        secrets = {v for _, emulator in emus.values()
                   for v in emulator.tokens._tokens}  # every token issued
        secrets |= set(codes) | {s for _, s in clients.values()}
        secrets.add(format_key(1, KEY).partition(":")[2])
        assert len(secrets) >= 3 * len(PROVIDERS)
        proc = await asyncio.create_subprocess_exec(
            pg_dump, "--no-owner", "--dbname", db_url, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE)
        dump, err = await proc.communicate()
        assert proc.returncode == 0, err.decode()
    dumped = dump.decode()
    assert "COPY public.oauth_tokens" in dumped
    logs = "\n".join(run.output)
    assert '"event": "oauth.completed"' in logs
    assert '"event": "oauth.refreshed"' in logs
    used = [json.loads(line) for line in logs.splitlines()
            if '"credentials.resolved"' in line and '"source": "vault"' in line]
    assert {e["provider"] for e in used} == set(PROVIDERS)  # the syncs used the vault
    leaked_logs = sorted(s[:6] + "..." for s in secrets if s in logs)
    leaked_dump = sorted(s[:6] + "..." for s in secrets if s in dumped)
    assert leaked_logs == []
    assert leaked_dump == []
