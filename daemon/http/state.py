"""Typed application state: what the HTTP app is built from, under ``web.AppKey``s."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import asyncpg
from aiohttp import web
from prometheus_client import CollectorRegistry

from daemon.http.health import LoopLagMonitor
from daemon.http.secrets import VenueWebhookSecrets
from daemon.http.store import WebhookStore
from daemon.oauth.connect import OAuthService
from daemon.provider import Provider
from daemon.settings import Settings

__all__ = [
    "LEADER",
    "LOOP_LAG",
    "OAUTH",
    "PLUGIN_FAILURES",
    "POOL",
    "PROVIDERS",
    "REGISTRIES",
    "SECRETS",
    "SETTINGS",
    "STORE",
]

POOL: web.AppKey[asyncpg.Pool] = web.AppKey("syncd.pool")
PROVIDERS: web.AppKey[Mapping[str, Provider]] = web.AppKey("syncd.providers")
PLUGIN_FAILURES: web.AppKey[Sequence[str]] = web.AppKey("syncd.plugin_failures")
SETTINGS = web.AppKey("syncd.settings", Settings)
SECRETS: web.AppKey[VenueWebhookSecrets] = web.AppKey("syncd.webhook_secrets")
STORE = web.AppKey("syncd.webhook_store", WebhookStore)
LOOP_LAG = web.AppKey("syncd.loop_lag", LoopLagMonitor)
REGISTRIES: web.AppKey[Sequence[CollectorRegistry]] = web.AppKey("syncd.registries")
#: The OAuth connect service (None: the server has no vault, OAuth routes answer 503).
OAUTH: web.AppKey[OAuthService | None] = web.AppKey("syncd.oauth")
#: Whether this replica leads (``syncd run`` sets it; absent, /readyz says nothing of it).
LEADER: web.AppKey[Callable[[], bool]] = web.AppKey("syncd.leader")
