"""``syncd oauth url`` / ``complete`` / ``refresh`` and ``syncd disconnect`` with the shipped
config (Old Town Theatre's QuickBooks says ``credentials: oauth``) against the emulator."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from daemon.plugins import load_plugins
from daemon.provider import EmulatorSettings
from daemon.testing.emulator import EmulatorServer
from daemon.vault.keys import format_key, generate_key
from tests.acceptance.conftest import SYNCD

ROOT = Path(__file__).resolve().parents[2]
KEYS = format_key(1, generate_key())
VENUE = "5c9a1e3b-7d2f-4b6a-8e0c-4f1d2a3b5c67"


async def syncd(env: dict[str, str], *args: str) -> tuple[int, str, str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("SYNCD_")}
    proc = await asyncio.create_subprocess_exec(
        SYNCD, *args, env={**base, **env}, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE)
    out, err = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


@pytest.fixture
async def env(db_url: str, tmp_path: Path) -> AsyncIterator[dict[str, str]]:
    shutil.copytree(ROOT / "config", tmp_path / "config")
    app = load_plugins(["quickbooks"]).provider("quickbooks").emulator(EmulatorSettings(seed=1))
    async with EmulatorServer(app) as server:
        values = {
            "SYNCD_DATABASE_URL": db_url, "SYNCD_ENCRYPTION_KEYS": KEYS,
            "SYNCD_LOG_FORMAT": "json", "SYNCD_CONFIG_DIR": str(tmp_path / "config"),
            "SYNCD_SYNC_BASE_URLS": json.dumps({"quickbooks": server.url}),
            "SYNCD_OAUTH_CLIENTS": json.dumps({"quickbooks": {
                "client_id": "emulated-client-id", "client_secret": "env:QBO_APP_SECRET"}}),
            "QBO_APP_SECRET": "emulated-client-secret",
        }
        code, _, err = await syncd(values, "apply")
        assert code == 0, err
        yield values


async def test_connect_refresh_and_disconnect_the_shipped_example(
        env: dict[str, str]) -> None:
    code, out, err = await syncd(env, "status", "Old Town Theatre")
    assert "disconnected" in out.splitlines()[2]  # quickbooks, before connecting

    code, url, err = await syncd(env, "oauth", "url", "Old Town Theatre", "quickbooks")
    assert code == 0, err
    async with httpx.AsyncClient() as http:
        callback = (await http.get(url.strip())).headers["Location"]
    assert callback.startswith("http://localhost:8080/oauth/quickbooks/callback?code=")

    code, out, err = await syncd(env, "oauth", "complete", callback)
    assert code == 0, err
    assert out.startswith(f"connected quickbooks for venue {VENUE} (account 9130350000000001; "
                          "scopes com.intuit.quickbooks.accounting; token expires ")
    assert "first sync queued on the HIGH lane as job " in out
    code, out, _ = await syncd(env, "status", "Old Town Theatre", "--json")
    rows = {r["provider"]: r for r in map(json.loads, out.splitlines())}
    assert rows["quickbooks"]["status"] == "connected"
    assert rows["quickbooks"]["queue_depth"] == 1

    code, _, err = await syncd(env, "oauth", "complete", callback)
    assert code == 1
    assert err.strip().splitlines()[-1].startswith(
        "syncd: error: this OAuth state was already used; start the quickbooks connection of "
        f"venue {VENUE} again; nothing was stored")

    code, out, err = await syncd(env, "oauth", "refresh", "Old Town Theatre", "quickbooks")
    assert code == 0, err
    assert out.startswith(f"refreshed the quickbooks token of venue {VENUE}; expires ")

    code, out, _ = await syncd(env, "status", "Old Town Theatre")
    line = next(x for x in out.splitlines() if "quickbooks" in x)
    assert " connected " in line
    assert "oauth grant" in line

    code, out, err = await syncd(env, "disconnect", "Old Town Theatre", "quickbooks")
    assert code == 0, err
    assert out.strip() == (f"disconnected quickbooks for venue {VENUE}: grant revoked at "
                           "quickbooks; deleted 1 token(s) and 0 API key(s)")
    code, out, _ = await syncd(env, "status", "Old Town Theatre")
    line = next(x for x in out.splitlines() if "quickbooks" in x)
    assert " disconnected " in line
    assert "oauth: not connected" in line
    code, _, err = await syncd(env, "oauth", "refresh", "Old Town Theatre", "quickbooks")
    assert code == 1
    assert err.strip().endswith("has no stored OAuth token; connect it with `syncd oauth url`")
