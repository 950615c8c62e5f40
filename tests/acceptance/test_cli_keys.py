"""``syncd keys generate|rotate|status`` as an operator runs them."""

from __future__ import annotations

import asyncio
import os
import signal
import uuid
from pathlib import Path

import asyncpg

from daemon.vault import LocalKeyProvider, Vault
from daemon.vault import rows as bindings
from daemon.vault.keys import format_key, generate_key, parse_keys
from tests.acceptance.conftest import SYNCD, Run

K1, K2 = generate_key(), generate_key()
KEYS_1 = format_key(1, K1)
KEYS_21 = f"{format_key(2, K2)},{format_key(1, K1)}"


async def _seed(pool: asyncpg.Pool, vault: Vault, n: int) -> list[tuple[str, str]]:
    """``n`` QuickBooks integrations with sealed tokens; their (access, refresh) values."""
    values = []
    for i in range(n):
        venue = str(uuid.UUID(int=i + 1))
        access, refresh = f"access-{i}-{uuid.uuid4()}", f"refresh-{i}-{uuid.uuid4()}"
        a = await vault.seal(access, bindings.access_token(venue, "quickbooks"))
        r = await vault.seal(refresh, bindings.refresh_token(venue, "quickbooks"))
        await pool.execute("INSERT INTO integration_configs (venue_id, provider) "
                           "VALUES ($1, 'quickbooks')", uuid.UUID(venue))
        await pool.execute(
            "INSERT INTO oauth_tokens (id, venue_id, provider, encrypted_access_token, "
            "encrypted_refresh_token, encryption_key_version) VALUES ($1, $2, 'quickbooks', "
            "$3, $4, $5)", uuid.UUID(int=i + 1), uuid.UUID(venue), a.blob, r.blob, a.version)
        values.append((access, refresh))
    return values


async def _opened(pool: asyncpg.Pool, vault: Vault) -> list[tuple[str, str]]:
    found = await pool.fetch("SELECT venue_id::text AS v, encrypted_access_token AS a, "
                             "encrypted_refresh_token AS r, encryption_key_version AS k "
                             "FROM oauth_tokens ORDER BY id")
    return [(await vault.open(r["a"], r["k"],
                              bindings.access_token(r["v"], "quickbooks")),
             await vault.open(r["r"], r["k"], bindings.refresh_token(r["v"], "quickbooks")))
            for r in found]


def test_generate_prints_the_next_version_first(syncd: Run, tmp_path: Path) -> None:
    first = syncd("keys", "generate", env={"SYNCD_DATABASE_URL": "postgresql://x/y"})
    assert first.returncode == 0, first.stderr
    name, _, value = first.stdout.strip().partition("=")
    assert name == "SYNCD_ENCRYPTION_KEYS"
    assert list(parse_keys(value, source="out")) == [1]
    second = syncd("keys", "generate", env={"SYNCD_ENCRYPTION_KEYS": value})
    keys = parse_keys(second.stdout.strip().partition("=")[2], source="out")
    assert sorted(keys) == [1, 2]
    assert second.stdout.strip().partition("=")[2].startswith("2:")
    written = syncd("keys", "generate", "--file", str(tmp_path / "k"),
                    env={"SYNCD_ENCRYPTION_KEYS": value})
    assert written.returncode == 0
    assert value.split(":")[1] not in written.stdout
    assert (tmp_path / "k").stat().st_mode & 0o777 == 0o600
    again = syncd("keys", "generate", "--file", str(tmp_path / "k"))
    assert again.returncode == 1
    assert again.stderr.strip().endswith("exists; not overwriting a key file")


def test_commands_needing_secrets_refuse_without_a_key(syncd: Run, db_url: str) -> None:
    out = syncd("keys", "status", env={"SYNCD_DATABASE_URL": db_url})
    assert out.returncode == 1
    assert out.stderr.strip() == (
        "syncd: error: no encryption key configured: set SYNCD_ENCRYPTION_KEYS (make one "
        "with `syncd keys generate`) or SYNCD_ENCRYPTION_KEY_FILES")
    assert "Traceback" not in out.stderr


def test_embedded_mode_creates_a_key_file_and_says_where(syncd: Run, tmp_path: Path) -> None:
    out = syncd("keys", "status", timeout=180)
    assert out.returncode == 0, out.stderr
    path = tmp_path / "syncd-vault.key"
    assert path.exists()
    assert path.stat().st_mode & 0o777 == 0o600
    assert "vault.key_created" in out.stderr
    assert str(path) in out.stderr


async def test_rotation_survives_a_kill_midway_and_the_old_key_can_go(
        syncd: Run, db_url: str, pool: asyncpg.Pool) -> None:
    old = Vault(LocalKeyProvider({1: K1}))
    values = await _seed(pool, old, 40)
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("SYNCD_")},
           "SYNCD_DATABASE_URL": db_url, "SYNCD_ENCRYPTION_KEYS": KEYS_21,
           "SYNCD_LOG_FORMAT": "json"}
    # Hold the 21st row so the rotation (one row per batch, in id order) stops there.
    async with pool.acquire() as holder:
        tx = holder.transaction()
        await tx.start()
        await holder.execute("SELECT 1 FROM oauth_tokens WHERE id = $1 FOR UPDATE",
                             uuid.UUID(int=21))
        proc = await asyncio.create_subprocess_exec(
            SYNCD, "keys", "rotate", "--batch-size", "1", env=env,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        while await pool.fetchval("SELECT count(*) FROM oauth_tokens "
                                  "WHERE encryption_key_version = 2") < 20:
            await asyncio.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
        await proc.wait()
        await tx.rollback()
    assert proc.returncode == -signal.SIGKILL
    by_version = dict(await pool.fetch("SELECT encryption_key_version, count(*) "
                                       "FROM oauth_tokens GROUP BY 1"))
    assert by_version == {1: 20, 2: 20}
    both = Vault(LocalKeyProvider({1: K1, 2: K2}))
    assert await _opened(pool, both) == values

    status = syncd("keys", "status", env={"SYNCD_DATABASE_URL": db_url,
                                          "SYNCD_ENCRYPTION_KEYS": KEYS_21})
    assert "version 1: 40 values (oauth_tokens 40)  [run `syncd keys rotate`]" in status.stdout
    again = syncd("keys", "rotate", env={"SYNCD_DATABASE_URL": db_url,
                                         "SYNCD_ENCRYPTION_KEYS": KEYS_21})
    assert again.returncode == 0, again.stderr
    assert again.stdout.startswith("resealed 20 secrets under key version 2")

    only_new = {"SYNCD_DATABASE_URL": db_url, "SYNCD_ENCRYPTION_KEYS": format_key(2, K2)}
    status = syncd("keys", "status", env=only_new)
    assert status.returncode == 0, status.stdout
    assert "version 2: 80 values (oauth_tokens 80)  [current]" in status.stdout
    assert await _opened(pool, Vault(LocalKeyProvider({2: K2}))) == values
    for access, refresh in values:
        for table in ("oauth_tokens", "sync_logs"):
            hits = await pool.fetchval(
                f"SELECT count(*) FROM {table} t WHERE t::text LIKE '%' || $1 || '%' "
                "OR t::text LIKE '%' || $2 || '%'", access, refresh)
            assert hits == 0


def test_status_flags_values_under_a_key_that_is_gone(syncd: Run, db_url: str) -> None:
    async def seed() -> None:
        pool = await asyncpg.create_pool(db_url, min_size=1, max_size=2)
        try:
            await _seed(pool, Vault(LocalKeyProvider({1: K1})), 2)
        finally:
            await pool.close()

    asyncio.run(seed())
    out = syncd("keys", "status", env={"SYNCD_DATABASE_URL": db_url,
                                       "SYNCD_ENCRYPTION_KEYS": format_key(2, K2)})
    assert out.returncode == 1
    assert "version 1: 4 values (oauth_tokens 4)  [NOT CONFIGURED: these values cannot be " \
           "read]" in out.stdout
