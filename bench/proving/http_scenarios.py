"""Scenarios of syncd's HTTP surface: a webhook storm, tenants probing each other."""

from __future__ import annotations

import asyncio
import json
import random
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import asyncpg
import httpx

from bench.proving.daemon import Daemon
from bench.proving.registry import Context, Result, scenario
from bench.proving.sync_scenarios import FAST_QUEUE, wait_until
from daemon.db import init_connection
from tests.integration import webhook_support as ws

PROVIDERS = ("square", "stripe", "mailchimp", "quickbooks")
#: Event numbers of forged and stale deliveries: never those of a genuine one.
FORGED_BASE = 7_000_000
STALE_BASE = 8_000_000
BASE = "https://syncd.example"


def event_number(provider: str, payload: dict[str, Any]) -> int | None:
    """The number a test delivery was built from (``ws.sample_body``), read back from what
    syncd stored."""
    try:
        if provider == "square":
            return int(str(payload["event_id"]).removeprefix("evt-sq-"))
        if provider == "stripe":
            return int(str(payload["id"]).removeprefix("evt_"))
        if provider == "quickbooks":
            entity = payload["eventNotifications"][0]["dataChangeEvent"]["entities"][0]
            return int(entity["id"]) - 1
        member = payload.get("data[id]") or (payload.get("data") or {}).get("id")
        return int(str(member).removeprefix("m"))
    except (KeyError, IndexError, TypeError, ValueError):
        return None


def delivery(provider: str, n: int, *, stale: bool = False,
             forge: str | None = None) -> tuple[str, bytes, dict[str, str]]:
    """Event ``n`` of ``provider`` as the provider sends it; stale (signed 20 minutes ago)
    or forged (``"secret"``: signed with another secret; ``"tamper"``: the body changed
    after signing)."""
    path = ws.path_for(provider)
    body, content_type = ws.sample_body(provider, n)
    timestamp = int(time.time()) - 1200 if stale else None
    secret = "not-the-secret-0123456789" if forge == "secret" else None
    headers = {"Content-Type": content_type,
               **ws.sign(provider, body, BASE + path, secret=secret, timestamp=timestamp)}
    if forge == "tamper":  # the same document, bytes added after signing
        body += b"&extra=1" if content_type.endswith("urlencoded") else b" "
    return path, body, headers


@scenario(6, "webhook-storm", "a storm of signed webhooks with duplicates, replays, stale "
          "timestamps and forgeries mixed in: each genuine event stored and processed once, "
          "no forgery stored")
async def webhook_storm(ctx: Context) -> Result:
    rng = random.Random(ctx.seed)
    genuine_n = 400 if ctx.quick else 4000
    result = Result("webhook-storm")
    db_url = await ctx.server.create_database()
    workdir = Path(tempfile.mkdtemp(prefix="syncd-prove-webhooks-"))
    pool = await asyncpg.create_pool(db_url, min_size=1, max_size=4, init=init_connection)
    assert pool is not None
    try:
        await ws.connect_venues(pool)
        env = {**ws.ENV, **FAST_QUEUE, "SYNCD_PUBLIC_BASE_URL": BASE,
               "SYNCD_WEBHOOK_SECRETS": json.dumps({"square": ws.SQUARE_KEY,
                                                    "quickbooks": ws.QUICKBOOKS_TOKEN})}
        genuine = {p: list(range(genuine_n // 4)) for p in PROVIDERS}
        sends: list[tuple[str, str, tuple[str, bytes, dict[str, str]]]] = []
        for p in PROVIDERS:
            for n in genuine[p]:
                one = delivery(p, n)
                sends.append(("genuine", p, one))
                if rng.random() < 0.3:
                    sends.append(("duplicate", p, one))
            for i in range(len(genuine[p]) // 5):
                sends.append(("forged", p, delivery(p, FORGED_BASE + i,
                                                    forge=rng.choice(["secret", "tamper"]))))
            if p in ("stripe", "mailchimp"):  # the providers that sign a timestamp
                for i in range(len(genuine[p]) // 5):
                    sends.append(("stale", p, delivery(p, STALE_BASE + i, stale=True)))
        rng.shuffle(sends)
        replays = [s for s in sends if s[0] == "genuine" and rng.random() < 0.1]
        statuses: Counter[tuple[str, int]] = Counter()
        async with Daemon(db_url, workdir / "logs", replicas=1, http=True, env=env) as daemon, \
                httpx.AsyncClient(timeout=60, limits=httpx.Limits(max_connections=32)) as http:
            gate = asyncio.Semaphore(32)

            async def post(kind: str, item: tuple[str, bytes, dict[str, str]]) -> None:
                path, body, headers = item
                async with gate:
                    response = await http.post(daemon.url + path, content=body,
                                               headers=headers)
                statuses[(kind, response.status_code)] += 1

            await asyncio.gather(*(post(kind, item) for kind, _, item in sends))
            # The same deliveries again, later, as a provider retries what it thinks failed.
            await asyncio.gather(*(post("replay", item) for _, _, item in replays))

            async def drained() -> bool:
                return not await pool.fetchval(
                    "SELECT count(*) FROM integration_webhooks "
                    "WHERE status IN ('pending', 'processing')")

            await wait_until(drained, 300 if ctx.quick else 900, "the events to be processed")
        rows = await pool.fetch("SELECT provider, payload, status FROM integration_webhooks")
        kinds = Counter(kind for kind, _, _ in sends) + Counter(
            {"replay": len(replays)})
        result.faults = sum(n for k, n in kinds.items() if k != "genuine")
        result.fault_kinds = ", ".join(f"{n} {k}" for k, n in sorted(kinds.items())
                                       if k != "genuine")
        result.load = f"{len(sends) + len(replays)} deliveries"
        stored: dict[str, Counter[int]] = {p: Counter() for p in PROVIDERS}
        unprocessed = 0
        for row in rows:
            n = event_number(row["provider"], row["payload"])
            if n is None:
                result.notes.append(f"a stored event of {row['provider']} names no event")
                continue
            stored[row["provider"]][n] += 1
            if n < FORGED_BASE and row["status"] not in ("processed", "ignored"):
                unprocessed += 1
        result.expected = sum(len(v) for v in genuine.values())
        result.at_provider = sum(len(set(stored[p]) & set(genuine[p])) for p in PROVIDERS)
        for p in PROVIDERS:
            result.lost += len(set(genuine[p]) - set(stored[p]))
            result.duplicated += sum(c - 1 for c in stored[p].values() if c > 1)
            result.forged_accepted += sum(1 for n in stored[p] if n >= FORGED_BASE)
        result.lost += unprocessed
        processed = Counter(row["status"] for row in rows)
    finally:
        await pool.close()
        await ctx.server.drop_database(db_url)
    answers = dict(sorted((f"{k}:{s}", n) for (k, s), n in statuses.items()))
    result.notes.append(f"answers {answers}; stored events {dict(processed)}")
    refused_ok = all(s == 401 for (k, s) in statuses if k in ("forged", "stale"))
    return result.finish(
        (refused_ok, "a forged or stale delivery was not answered 401"),
        (all(s == 200 for (k, s) in statuses if k in ("genuine", "duplicate", "replay")),
         "a genuine delivery was not answered 200"),
        (unprocessed == 0, f"{unprocessed} genuine events not processed"),
    )
