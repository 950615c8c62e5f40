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


# --- 9: tenant isolation ---------------------------------------------------------------------

JWT_SECRET = "prove-admin-api-secret-0123456789abcdef"  # noqa: S105 - a test value
API_ENV = {"SYNCD_API_JWT_SECRET": JWT_SECRET, "SYNCD_API_JWT_ISSUER": "https://platform.example",
           "SYNCD_API_JWT_AUDIENCE": "syncd"}


def token(role: str, venues: list[str] | None, *, secret: str = JWT_SECRET) -> str:
    import jwt
    claims: dict[str, Any] = {"sub": f"prove-{role}", "role": role,
                              "iss": "https://platform.example", "aud": "syncd",
                              "exp": int(time.time()) + 3600}
    if venues is not None:
        claims["venues"] = venues
    return jwt.encode(claims, secret, algorithm="HS256")


def _forged_tokens(venue: str) -> list[str]:
    """Tokens claiming ``venue`` that no platform issued: another secret, no signature
    (``alg: none``), expired, another audience."""
    import base64

    import jwt
    def b64(data: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")
    claims = {"sub": "forger", "role": "venue_admin", "venues": [venue],
              "iss": "https://platform.example", "aud": "syncd",
              "exp": int(time.time()) + 3600}
    return [
        token("venue_admin", [venue], secret="guessed-secret-0123456789abcdef012345"),  # noqa: S106
        f"{b64({'alg': 'none', 'typ': 'JWT'})}.{b64(claims)}.",
        jwt.encode({**claims, "exp": int(time.time()) - 3600}, JWT_SECRET, algorithm="HS256"),
        jwt.encode({**claims, "aud": "another-service"}, JWT_SECRET, algorithm="HS256"),
    ]


async def _tenant(pool: asyncpg.Pool, label: str, provider: str) -> dict[str, str]:
    """A venue with an integration, a sync log, a dead letter and a webhook event, each
    carrying a marker no other venue's answer may contain."""
    import uuid

    from daemon.queue import enqueue
    venue = uuid.uuid4()
    marker = f"marker-{label}-{uuid.uuid4().hex[:10]}"
    await pool.execute(
        "INSERT INTO integration_configs (venue_id, provider, venue_name, status, last_error, "
        "credentials) VALUES ($1, $2, $3, 'error', $4, $5)", venue, provider,
        f"Venue {label} {marker}", f"refused: {marker}", {"api_key": "env:VENUE_X_KEY"})
    job = await enqueue(pool, venue_id=venue, provider=provider, entity_type="customer")
    await pool.execute(
        "UPDATE sync_queue SET status = 'dead_letter', attempts = max_attempts, "
        "error_kind = 'retryable', last_error = $2, completed_at = now() WHERE id = $1",
        job, f"dead: {marker}")
    await pool.execute(
        "INSERT INTO integration_webhooks (venue_id, provider, event_type, external_id, "
        "payload, status) VALUES ($1, $2, 'customer.updated', $3, '{}', 'processed')",
        venue, provider, f"evt-{marker}")
    await pool.execute(
        "INSERT INTO sync_logs (venue_id, provider, operation, entity_type, status, errors, "
        "started_at) VALUES ($1, $2, 'sync', 'customer', 'failed', $3, now())", venue, provider,
        [{"local_id": marker, "error": marker}])
    return {"venue": str(venue), "provider": provider, "marker": marker, "job": str(job),
            "label": label}


def _probes(spec: dict[str, Any], other: dict[str, str]) -> list[tuple[str, str, dict[str, str],
                                                                        Any]]:
    """Every admin route of the description, aimed at ``other``'s resources: (method, path,
    query, body)."""
    out: list[tuple[str, str, dict[str, str], Any]] = []
    for template, operations in spec["paths"].items():
        for method, op in operations.items():
            if template == "/openapi.json":
                continue
            path = (template.replace("{venue}", other["venue"])
                    .replace("{provider}", other["provider"]).replace("{id}", other["job"]))
            queries: list[dict[str, str]] = [{}]
            for param in op.get("parameters", []):
                if param["in"] != "query":
                    continue
                value = {"venue": other["venue"], "provider": other["provider"],
                         "status": "processed", "limit": "1000"}.get(param["name"])
                if value is not None:
                    queries.append({param["name"]: value})
            body = {"entity": "all"} if method == "post" and "sync" in template else None
            out += [(method.upper(), "/api/v1" + path, q, body) for q in queries]
    return out


@scenario(9, "tenant-isolation", "venue-admin tokens probe every admin route of the OpenAPI "
          "description for other venues' integrations, syncs, dead letters and webhooks: all "
          "refused, nothing leaked")
async def tenant_isolation(ctx: Context) -> Result:
    result = Result("tenant-isolation", fault_kinds="probes")
    db_url = await ctx.server.create_database()
    workdir = Path(tempfile.mkdtemp(prefix="syncd-prove-tenants-"))
    pool = await asyncpg.create_pool(db_url, min_size=1, max_size=4, init=init_connection)
    assert pool is not None
    try:
        providers = ["stripe", "square", "mailchimp", "quickbooks"]
        count = 3 if ctx.quick else 8
        tenants = [await _tenant(pool, chr(65 + i), providers[i % 4]) for i in range(count)]
        async with Daemon(db_url, workdir / "logs", replicas=0, http=True, env=API_ENV) as d, \
                httpx.AsyncClient(base_url=d.url, timeout=30) as http:
            spec = (await http.get("/api/v1/openapi.json")).json()
            admin = {"Authorization": f"Bearer {token('platform_admin', None)}"}
            # The markers are there to be found: a platform admin sees every one of them.
            seen = (await http.get("/api/v1/integrations", headers=admin)).text + (
                await http.get("/api/v1/dead-letters", headers=admin)).text + (
                await http.get("/api/v1/webhooks", headers=admin)).text
            visible = all(t["marker"] in seen for t in tenants)
            probes = leaks = refused = 0
            statuses: Counter[int] = Counter()
            for me in tenants:
                mine = {"Authorization": f"Bearer {token('venue_admin', [me['venue']])}"}
                own = await http.get(f"/api/v1/venues/{me['venue']}/integrations/"
                                     f"{me['provider']}", headers=mine)
                if own.status_code != 200 or me["marker"] not in own.text:
                    result.notes.append(f"venue {me['label']} cannot see its own integration")
                    visible = False
                for other in tenants:
                    if other is me:
                        continue
                    for method, path, query, body in _probes(spec, other):
                        response = await http.request(method, path, params=query, json=body,
                                                      headers=mine)
                        probes += 1
                        statuses[response.status_code] += 1
                        text = response.text
                        if response.status_code in (403, 404):
                            refused += 1
                        leaked = [t["label"] for t in tenants if t is not me
                                  and (t["marker"] in text or (response.status_code < 300
                                                               and t["venue"] in text))]
                        if leaked or response.status_code >= 500 or (
                                response.status_code < 300 and method == "POST"):
                            leaks += 1
                            if len(result.notes) < 8:
                                result.notes.append(f"{method} {path} {query} as "
                                                    f"{me['label']}: {response.status_code} "
                                                    f"{text[:200]}")
            # Tokens a venue admin might forge to reach another venue: all 401.
            forged_accepted = 0
            for other in tenants:
                path = f"/api/v1/venues/{other['venue']}/integrations/{other['provider']}"
                for forged in _forged_tokens(other["venue"]):
                    response = await http.get(path, headers={
                        "Authorization": f"Bearer {forged}"})
                    probes += 1
                    statuses[response.status_code] += 1
                    if response.status_code != 401:
                        forged_accepted += 1
                        result.notes.append(f"a forged token got {response.status_code}")
            result.forged_accepted = forged_accepted
        # Nothing another venue asked for happened: every dead letter is still dead and no
        # sync was queued.
        changed = await pool.fetchval(
            "SELECT count(*) FROM sync_queue WHERE venue_id = ANY($1::uuid[]) "
            "AND status <> 'dead_letter'", [t["venue"] for t in tenants])
        result.faults = probes
        result.load = f"{count} venues, {probes} probes"
        result.leaked = leaks + changed
        result.notes.append(f"answers {dict(sorted(statuses.items()))}; {refused} refused "
                            "outright, the rest answered with nothing of another venue")
    finally:
        await pool.close()
        await ctx.server.drop_database(db_url)
    return result.finish(
        (visible, "the markers were not visible to their own venue and to a platform admin"),
        (probes > 0, "no probe was made"),
    )
