"""One process of the refresh race: N refreshers wait at a barrier, then refresh at once.

Run as ``python -m tests.integration.refresh_race DSN VENUE PROVIDER BASE_URL STALE N``
with SYNCD_ENCRYPTION_KEYS and SYNCD_OAUTH_CLIENTS set. Prints ``RESULT`` and a JSON list:
the SHA-256 of each refresher's resulting access token (None when it got nothing).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import sys

import asyncpg

from daemon.db import init_connection
from daemon.oauth.refresh import Refresher
from daemon.plugins import load_plugins
from daemon.settings import Settings
from daemon.vault.provider import load_vault

BARRIER = 0x5253_4543  # the advisory lock the test holds until every refresher waits on it


async def main(dsn: str, venue: str, provider: str, base_url: str, stale: str, n: int) -> None:
    settings = Settings(_env_file=None, database_url=dsn)
    plugins = load_plugins([provider])
    pool = await asyncpg.create_pool(dsn, min_size=1, max_size=2 * n + 2, init=init_connection)
    refresher = Refresher(pool, load_vault(plugins, settings), plugins, settings,
                          base_urls={provider: base_url})

    async def one() -> str | None:
        async with pool.acquire() as conn:
            await conn.execute("SELECT pg_advisory_lock_shared($1)", BARRIER)
            await conn.execute("SELECT pg_advisory_unlock_shared($1)", BARRIER)
        token = await refresher.refresh(venue, provider, stale=stale)
        return hashlib.sha256(token.access_token.encode()).hexdigest() if token else None

    try:
        print("RESULT " + json.dumps(await asyncio.gather(*(one() for _ in range(n)))))
    finally:
        await pool.close()


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:6], int(sys.argv[6])))
