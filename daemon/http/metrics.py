"""The HTTP layer's metrics and the ``GET /metrics`` exposition.

Webhook deliveries are counted by provider and outcome. A provider label only ever holds a
loaded provider's name (anything else is counted as ``unknown``), and no label carries a
venue id or a secret, so the series stay few.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

__all__ = [
    "COMMIT_DELIVERIES",
    "CONTENT_TYPE_LATEST",
    "INGEST_SECONDS",
    "REGISTRY",
    "WEBHOOKS",
    "WEBHOOK_EVENTS",
    "exposition",
    "observe_events",
    "observe_webhook",
]

REGISTRY = CollectorRegistry(auto_describe=True)

WEBHOOKS = Counter(
    "syncd_webhooks",
    "Webhook deliveries received, by provider and outcome (stored, duplicate, unauthorized, "
    "too_large, malformed, unsupported_media_type, unavailable, unknown_venue, not_found).",
    ["provider", "outcome"],
    registry=REGISTRY,
)
INGEST_SECONDS = Histogram(
    "syncd_webhook_ingest_seconds",
    "Seconds from a delivery's arrival to its answer, for stored and duplicate deliveries.",
    ["provider"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 5),
    registry=REGISTRY,
)

COMMIT_DELIVERIES = Histogram(
    "syncd_webhook_commit_deliveries",
    "Webhook deliveries stored by one group commit (one statement, one transaction).",
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024),
    registry=REGISTRY,
)

WEBHOOK_EVENTS = Gauge(
    "syncd_webhook_events",
    "Stored webhook events by provider and status (pending, processed, failed, ignored), "
    "read from the database at each scrape.",
    ["provider", "status"],
    registry=REGISTRY,
)


def observe_events(rows: Iterable[Mapping[str, object]]) -> None:
    """Set the stored-events gauge from ``(provider, status, events)`` rows."""
    for row in rows:
        WEBHOOK_EVENTS.labels(provider=str(row["provider"]), status=str(row["status"])).set(
            float(row["events"]))  # type: ignore[arg-type]


_COUNTERS: dict[tuple[str, str], Counter] = {}
_TIMERS: dict[str, Histogram] = {}


def observe_webhook(provider: str, outcome: str, seconds: float | None = None) -> None:
    """Count one delivery (and its ingest time when it was stored or a duplicate)."""
    counter = _COUNTERS.get((provider, outcome))
    if counter is None:
        counter = _COUNTERS[(provider, outcome)] = WEBHOOKS.labels(provider=provider,
                                                                   outcome=outcome)
    counter.inc()
    if seconds is not None:
        timer = _TIMERS.get(provider)
        if timer is None:
            timer = _TIMERS[provider] = INGEST_SECONDS.labels(provider=provider)
        timer.observe(seconds)


def exposition(registries: Iterable[CollectorRegistry]) -> bytes:
    """Every registry in Prometheus text format, one after the other."""
    return b"".join(generate_latest(r) for r in registries)
