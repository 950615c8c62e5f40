"""schemathesis against the admin API's own OpenAPI description, on a served app with a
platform admin's token: every generated request (valid and invalid) must be answered as
the description says, never with a server error."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import jwt
import pytest
import schemathesis
from hypothesis import HealthCheck, settings

from daemon.db import init_connection
from daemon.http.openapi import OPENAPI
from tests.integration import webhook_support as ws

SECRET = "schemathesis-secret-0123456789abcdef01234"
ISSUER = "https://platform.example"
AUDIENCE = "syncd"

schema = schemathesis.openapi.from_dict(OPENAPI)


@pytest.fixture
def api_url(db_url: str, tmp_path: Path) -> Iterator[str]:
    """The app on a real port, its loop in a thread of its own (schemathesis calls are
    synchronous)."""
    ready = threading.Event()
    holder: dict[str, object] = {}

    async def main() -> None:
        pool = await asyncpg.create_pool(db_url, min_size=1, max_size=4, init=init_connection)
        stop = asyncio.Event()
        holder["stop"], holder["loop"] = stop, asyncio.get_running_loop()
        try:
            await ws.connect_venues(pool)
            async with ws.running_app(pool, tmp_path, api_jwt_secret=SECRET,
                                      api_jwt_issuer=ISSUER,
                                      api_jwt_audience=AUDIENCE) as server:
                holder["url"] = server.url
                ready.set()
                await stop.wait()
        finally:
            await pool.close()
            ready.set()

    thread = threading.Thread(target=lambda: asyncio.run(main()), daemon=True)
    thread.start()
    assert ready.wait(60)
    assert "url" in holder, "the server did not start"
    try:
        yield f"{holder['url']}/api/v1"
    finally:
        loop, stop = holder["loop"], holder["stop"]
        assert isinstance(loop, asyncio.AbstractEventLoop)
        assert isinstance(stop, asyncio.Event)
        loop.call_soon_threadsafe(stop.set)
        thread.join(60)


def _token() -> str:
    now = int(time.time())
    return jwt.encode({"iss": ISSUER, "aud": AUDIENCE, "exp": now + 3600,
                       "role": "platform_admin", "sub": "schemathesis"}, SECRET,
                      algorithm="HS256")


@schema.parametrize()
@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                 HealthCheck.filter_too_much])
def test_the_admin_api_answers_as_its_description_says(
    case: schemathesis.Case, api_url: str
) -> None:
    case.call_and_validate(base_url=api_url, headers={"Authorization": f"Bearer {_token()}"})
