"""Every bundled client takes its account's limiter from the registry its context carries,
so the limiters a process composes (shared with every replica) are the ones in use."""

from __future__ import annotations

import httpx
import pytest

from daemon.plugins import load_plugins
from daemon.provider import ClientContext, Credentials, LimitScope
from daemon.ratelimit import LimiterRegistry, extra_windows

ACCOUNTS = {"mailchimp": {"dc": "us6", "account": "acct-1", "list_id": "l1",
                          "store_id": "s1"},
            "quickbooks": {"realm_id": "9130"}, "square": {"merchant_id": "M1"},
            "stripe": {"account": "acct_1"}}


@pytest.mark.parametrize("name", sorted(ACCOUNTS))
async def test_a_client_uses_the_registry_of_its_context(name: str) -> None:
    provider = load_plugins().provider(name)
    registry = LimiterRegistry()  # empty: a registry with no limiter yet must still be used
    async with httpx.AsyncClient() as http:
        options = {k: v for k, v in ACCOUNTS[name].items() if k in ("list_id", "store_id")}
        ctx = ClientContext("venue-1", Credentials(access_token="tok-123456",
                                                   api_key="key-123456-us6",
                                                   account=ACCOUNTS[name]),
                            options, http, base_url="http://127.0.0.1:9", limiters=registry)
        client = provider.client(ctx)
        await client.aclose()
    assert len(registry) == 1


@pytest.mark.parametrize("name", sorted(ACCOUNTS))
def test_a_bundled_provider_declares_the_scope_of_every_limit(name: str) -> None:
    limit = load_plugins().provider(name).capabilities.rate_limit
    named = {"requests_per_second", "max_concurrency"}
    named |= {key for key, _ in extra_windows(limit.extra)}
    named |= {key for key in limit.extra if key.endswith("_concurrency")}
    assert named <= set(limit.scopes), named - set(limit.scopes)
    assert all(isinstance(scope, LimitScope) for scope in limit.scopes.values())
