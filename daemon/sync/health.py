"""Integration health: 24-hour success rate, timings, queue depth, connection checks.

Thresholds are the replaced service's: an integration whose connection check fails is
unhealthy; otherwise unhealthy when the 24 h success rate is under 50 % or the response time
over 10 s, degraded under 90 % or over 5 s, else healthy. The response time is the
connection check's when one ran, else the average sync duration. A sync counts as a success
when it completed, fully or partly (a few rejected records do not make a provider unhealthy).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg
import httpx

from daemon.credentials import CredentialError, CredentialStore
from daemon.logs import get_logger
from daemon.provider import ClientContext, Provider
from daemon.sql import queries
from daemon.sync.settings import base_url_for

__all__ = ["HealthMonitor", "HealthReport", "check_connection", "classify", "recompute_health"]

log = get_logger("syncd.health")
_Q = queries("sync.sql")

UNHEALTHY_RATE, DEGRADED_RATE = 50.0, 90.0
UNHEALTHY_MS, DEGRADED_MS = 10_000.0, 5_000.0


def classify(connected: bool | None, success_rate: float, response_ms: float) -> str:
    """healthy, degraded or unhealthy (see the module docstring)."""
    if connected is False:
        return "unhealthy"
    if success_rate < UNHEALTHY_RATE or response_ms > UNHEALTHY_MS:
        return "unhealthy"
    if success_rate < DEGRADED_RATE or response_ms > DEGRADED_MS:
        return "degraded"
    return "healthy"


@dataclass(frozen=True, slots=True)
class HealthReport:
    venue_id: str
    provider: str
    status: str
    previous: str
    success_rate: float
    average_sync_time_ms: int
    queue_depth: int
    connection_ok: bool | None
    detail: str = ""

    @property
    def changed(self) -> bool:
        return self.status != self.previous


async def recompute_health(pool: asyncpg.Pool, venue_id: str, provider: str, *,
                           connection_ok: bool | None = None,
                           response_ms: float | None = None, detail: str = ""
                           ) -> HealthReport:
    """Recompute and store one integration's health; log and record a status change."""
    async with pool.acquire() as conn, conn.transaction():
        previous = await conn.fetchval(
            "SELECT health_status FROM integration_configs "
            "WHERE venue_id = $1::uuid AND provider = $2 FOR UPDATE", venue_id, provider)
        stats = await conn.fetchrow(_Q["stats_24h"], venue_id, provider)
        queue = await conn.fetchrow(_Q["queue_depth"], venue_id, provider)
        syncs = stats["syncs"]
        rate = 100.0 * stats["successes"] / syncs if syncs else 100.0
        avg_ms = float(stats["avg_ms"])
        status = classify(connection_ok, rate, response_ms if response_ms is not None
                          else avg_ms)
        last_success: datetime | None = stats["last_success_at"]
        last_failure: datetime | None = stats["last_failure_at"]
        await conn.execute(
            _Q["save_health"], venue_id, provider, status, round(rate, 2), int(avg_ms),
            last_success, last_failure, syncs, stats["successes"], stats["failures"],
            stats["api_calls"], queue["depth"], queue["oldest"], connection_ok)
        if previous is not None:
            await conn.execute(_Q["set_health_status"], venue_id, provider, status,
                               detail or None if connection_ok is False else None)
    report = HealthReport(venue_id, provider, status, previous or "unknown", rate,
                          int(avg_ms), queue["depth"], connection_ok, detail)
    if report.changed:
        log.warning("health.status_changed", venue_id=venue_id, provider=provider,
                    old=report.previous, new=status, success_rate=round(rate, 2),
                    connection_ok=connection_ok, detail=detail or None)
    return report


async def check_connection(provider: Provider, credentials: CredentialStore, venue_id: str,
                           http: httpx.AsyncClient, base_url: str | None = None, *,
                           options: Mapping[str, Any] | None = None,
                           context: Mapping[str, Any] | None = None
                           ) -> tuple[bool, float, str]:
    """``test_connection`` for one integration: (ok, milliseconds, detail). ``options`` are
    the integration's (a client may need them to know its account, e.g. a Mailchimp list);
    ``context`` holds more :class:`ClientContext` fields (the runtime's limiters, retry
    policy, locks, environment)."""
    start = time.monotonic()
    try:
        creds = await credentials.get(venue_id, provider.name)
        given = {k: v for k, v in (options or {}).items()
                 if k not in ("base_url", "delete_policy")}
        try:
            opts: Any = provider.options_model().model_validate(given)
        except Exception:  # the client reports what it cannot use
            opts = given
        client = provider.client(ClientContext(venue_id=venue_id, credentials=creds,
                                               options=opts, http=http, base_url=base_url,
                                               **dict(context or {})))
        try:
            status = await client.test_connection()
        finally:
            await client.aclose()
        ok, detail = status.ok, status.detail
    except CredentialError as exc:
        ok, detail = False, str(exc)
    except Exception as exc:  # a broken plugin or transport: the check failed
        ok, detail = False, f"{type(exc).__name__}: {exc}"
    return ok, (time.monotonic() - start) * 1000, detail


class HealthMonitor:
    """On an interval, check enabled integrations and recompute their health.

    Every enabled integration takes part, whether OAuth connected it or the config manages
    it with credential references. A round checks at most ``batch_size`` integrations, those
    whose health is oldest and older than ``recheck_seconds`` (default: the interval), so a
    large config is covered over several rounds at a bounded cost; a round stops between
    integrations once ``stop`` is set.
    """

    def __init__(self, pool: asyncpg.Pool, providers: Mapping[str, Provider],
                 credentials: CredentialStore, *, interval: float = 60.0,
                 http: httpx.AsyncClient | None = None,
                 base_urls: Mapping[str, str] | None = None, batch_size: int = 100,
                 recheck_seconds: float | None = None,
                 context: Mapping[str, Any] | None = None) -> None:
        self.pool = pool
        self.providers = providers
        self.credentials = credentials
        self.interval = interval
        self.http = http
        self.base_urls = dict(base_urls or {})
        self.batch_size = batch_size
        self.recheck_seconds = interval if recheck_seconds is None else recheck_seconds
        self.context = dict(context or {})

    async def run_once(self, stop: asyncio.Event | None = None) -> list[HealthReport]:
        async with self.pool.acquire() as conn:
            rows = await conn.fetch(_Q["health_due"], float(self.recheck_seconds),
                                    self.batch_size)
        reports: list[HealthReport] = []
        if not rows:
            return reports
        http = self.http or httpx.AsyncClient(timeout=30.0)
        try:
            for row in rows:
                if stop is not None and stop.is_set():
                    log.info("health.round_interrupted", checked=len(reports),
                             left=len(rows) - len(reports))
                    break
                provider = self.providers.get(row["provider"])
                ok: bool | None = None
                ms: float | None = None
                detail = ""
                if provider is not None:
                    options = row["options"] if isinstance(row["options"], Mapping) else {}
                    environment = ("sandbox" if row["environment"] == "sandbox"
                                   else "production")
                    ok, ms, detail = await check_connection(
                        provider, self.credentials, row["venue_id"], http,
                        base_url_for(self.base_urls, row["provider"], row["venue_id"])
                        or options.get("base_url"),
                        options=options, context={**self.context, "environment": environment})
                else:
                    ok, detail = False, f"provider {row['provider']!r} is not loaded"
                reports.append(await recompute_health(
                    self.pool, row["venue_id"], row["provider"], connection_ok=ok,
                    response_ms=ms, detail=detail))
        finally:
            if self.http is None:
                await http.aclose()
        return reports

    async def run(self, stop: asyncio.Event) -> None:
        """Check until ``stop`` is set; a failing round is logged, never fatal."""
        while not stop.is_set():
            try:
                await self.run_once(stop)
            except Exception as exc:
                log.error("health.round_failed", error=f"{type(exc).__name__}: {exc}")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=self.interval)
