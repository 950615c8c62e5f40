"""One retry policy: the HTTP layer's tries come from it, and it answers how long a
failing job takes to give up."""

from __future__ import annotations

import random

import httpx
import pytest

from daemon.httpclient import HTTPError, ProviderHTTP
from daemon.provider import Credentials
from daemon.ratelimit import ManualClock, RateLimiter
from daemon.retry import RetryPolicy
from daemon.settings import Settings
from daemon.sync.settings import SyncSettings


def test_the_policy_comes_from_the_settings_of_each_layer() -> None:
    policy = RetryPolicy.from_settings(
        Settings(_env_file=None, queue_max_attempts=3, queue_retry_base_seconds=2,
                 queue_retry_cap_seconds=10),
        SyncSettings(max_attempts=5, max_backoff_seconds=7))
    assert (policy.call_attempts, policy.call_cap_seconds) == (5, 7)
    assert (policy.job_attempts, policy.job_base_seconds, policy.job_cap_seconds) == (3, 2, 10)
    assert policy.total_call_attempts == 15


def test_give_up_after_adds_the_waits_of_every_layer_once() -> None:
    policy = RetryPolicy(call_attempts=3, call_base_seconds=1, call_cap_seconds=3,
                         job_attempts=4, job_base_seconds=10, job_cap_seconds=25)
    # Within one run: waits after tries 1 and 2 of a call (1 + 2); four runs of the job.
    # Between runs: waits after job tries 1, 2 and 3 (10 + 20 + 25, capped).
    assert policy.give_up_after() == (1 + 2) * 4 + (10 + 20 + 25)
    assert "dead-lettered within 67 s" in policy.describe()


def test_delays_stay_within_their_ceilings() -> None:
    policy = RetryPolicy(call_cap_seconds=2, job_cap_seconds=100)
    rng = random.Random(3)
    for attempt in range(1, 12):
        assert 0 <= policy.call_delay(attempt, rng) <= policy.call_ceiling(attempt) <= 2
        assert 0 <= policy.job_delay(attempt, rng=rng) <= policy.job_ceiling(attempt) <= 100
    assert policy.job_delay(1, retry_after=500) == 500  # Retry-After is a floor


def test_a_policy_without_tries_is_refused() -> None:
    with pytest.raises(ValueError, match="at least one try"):
        RetryPolicy(call_attempts=0)


async def test_the_http_layer_makes_the_policys_tries_and_says_so() -> None:
    calls = 0

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        return httpx.Response(503, json={"message": "down"})

    clock = ManualClock(auto_advance=True)
    policy = RetryPolicy(call_attempts=3, call_cap_seconds=0.01)
    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
        http = ProviderHTTP(client, provider="acme", base_url="https://api.example.test",
                            credentials=Credentials(api_key="k"), auth_headers=lambda c: {},
                            limiter=RateLimiter(rate=100.0, burst=100, max_concurrency=2,
                                                clock=clock),
                            clock=clock, max_attempts=9, retry=policy)
        with pytest.raises(HTTPError) as caught:
            await http.request("GET", "/things")
    assert calls == 3  # the policy's tries, not max_attempts
    assert caught.value.attempts == 3
