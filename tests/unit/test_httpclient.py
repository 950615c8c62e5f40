"""ProviderHTTP against a stub transport: retries, Retry-After, refresh, classification."""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import httpx
import pytest

from daemon.httpclient import (
    Fault,
    HTTPError,
    ProviderHTTP,
    backoff_delay,
    classify_status,
    parse_retry_after,
)
from daemon.provider import Credentials, ErrorKind
from daemon.ratelimit import ManualClock, RateLimiter

SECRET = "sk-very-secret-token-123"
NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)

Handler = Callable[[httpx.Request], httpx.Response]


def _bearer(c: Credentials) -> Mapping[str, str]:
    return {"Authorization": f"Bearer {c.access_token}"}


def _make(
    handler: Handler, *, clock: ManualClock | None = None, **kw: object
) -> tuple[ProviderHTTP, httpx.AsyncClient, ManualClock]:
    clock = clock or ManualClock(auto_advance=True)
    client = httpx.AsyncClient(transport=httpx.MockTransport(handler))
    limiter = RateLimiter(rate=1000.0, burst=1000, max_concurrency=4, clock=clock)
    http = ProviderHTTP(
        client,
        provider="acme",
        base_url="https://api.example.test/v1",
        credentials=Credentials(access_token=SECRET),
        auth_headers=_bearer,
        limiter=limiter,
        clock=clock,
        wall=lambda: NOW,
        rng=random.Random(7),
        **kw,  # type: ignore[arg-type]
    )
    return http, client, clock


async def test_success_counts_calls_and_bytes_and_sends_auth() -> None:
    seen: list[httpx.Request] = []

    def handler(req: httpx.Request) -> httpx.Response:
        seen.append(req)
        return httpx.Response(200, json={"ok": True})

    http, client, _ = _make(handler)
    async with client:
        body = await http.json("POST", "/things", json_body={"a": 1})
    assert body == {"ok": True}
    assert http.api_calls == 1
    assert http.bytes_sent == len(b'{"a":1}')
    assert seen[0].url == "https://api.example.test/v1/things"
    assert seen[0].headers["authorization"] == f"Bearer {SECRET}"


async def test_429_with_retry_after_pauses_then_succeeds() -> None:
    calls = 0

    def handler(req: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        if calls == 1:
            return httpx.Response(429, headers={"Retry-After": "7"})
        return httpx.Response(200, json={})

    http, client, clock = _make(handler)
    async with client:
        await http.request("GET", "/x")
    assert calls == 2
    assert 7.0 in clock.sleeps  # the limiter held the account for Retry-After
    assert clock.now() >= 7.0
    assert http.retries == 1


async def test_429_without_retry_after_uses_documented_default() -> None:
    calls = 0

    def handler(req: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        return httpx.Response(429) if calls == 1 else httpx.Response(200)

    http, client, clock = _make(handler, default_retry_after=60.0)
    async with client:
        await http.request("GET", "/x")
    assert clock.now() >= 60.0


async def test_429_with_http_date_retry_after() -> None:
    calls = 0
    when = format_datetime(NOW + timedelta(seconds=12), usegmt=True)

    def handler(req: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        return httpx.Response(429, headers={"Retry-After": when}) if calls == 1 else (
            httpx.Response(200))

    http, client, clock = _make(handler)
    async with client:
        await http.request("GET", "/x")
    assert clock.now() == pytest.approx(12.0)


async def test_a_retry_after_past_the_backoff_cap_gives_the_call_up_at_once() -> None:
    # A wait of minutes would hold a worker slot and the job's lease inside one call; the
    # call gives up with the wait, and the engine re-queues the job for then.
    def handler(req: httpx.Request) -> httpx.Response:
        return httpx.Response(429, headers={"Retry-After": "120"})

    http, client, clock = _make(handler)
    async with client:
        with pytest.raises(HTTPError) as info:
            await http.request("GET", "/x")
    assert info.value.kind is ErrorKind.RETRYABLE
    assert info.value.retry_after == 120.0
    assert http.api_calls == 1
    assert clock.now() == 0.0


async def test_429_exhausted_is_retryable_with_retry_after() -> None:
    def handler(req: httpx.Request) -> httpx.Response:
        return httpx.Response(429, headers={"Retry-After": "2"}, json={"detail": "slow down"})

    http, client, _ = _make(handler, max_attempts=3)
    async with client:
        with pytest.raises(HTTPError) as info:
            await http.request("GET", "/x")
    assert info.value.kind is ErrorKind.RETRYABLE
    assert info.value.status == 429
    assert info.value.retry_after == 2.0
    assert http.api_calls == 3


async def test_5xx_backs_off_with_capped_jitter_then_gives_up() -> None:
    def handler(req: httpx.Request) -> httpx.Response:
        return httpx.Response(503, text="upstream down")

    http, client, clock = _make(handler, max_attempts=4, backoff_base=1.0, backoff_cap=2.5)
    async with client:
        with pytest.raises(HTTPError) as info:
            await http.request("GET", "/x")
    assert info.value.kind is ErrorKind.RETRYABLE
    assert http.api_calls == 4
    backoffs = [s for s in clock.sleeps if s > 0]
    assert len(backoffs) == 3
    assert all(0 <= s <= 2.5 for s in backoffs)


async def test_transport_errors_are_retried_then_retryable() -> None:
    calls = 0

    def handler(req: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        raise httpx.ConnectError("connection refused", request=req)

    http, client, _ = _make(handler, max_attempts=3)
    async with client:
        with pytest.raises(HTTPError) as info:
            await http.request("GET", "/x")
    assert info.value.kind is ErrorKind.RETRYABLE
    assert "ConnectError" in str(info.value)
    assert calls == 3


async def test_transport_error_then_success() -> None:
    calls = 0

    def handler(req: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise httpx.ReadTimeout("timed out", request=req)
        return httpx.Response(200)

    http, client, _ = _make(handler)
    async with client:
        assert (await http.request("GET", "/x")).status_code == 200


async def test_4xx_is_permanent_without_retry_and_carries_provider_text() -> None:
    def handler(req: httpx.Request) -> httpx.Response:
        return httpx.Response(400, json={"title": "Invalid Resource", "detail": "bad email"})

    http, client, _ = _make(handler)
    async with client:
        with pytest.raises(HTTPError) as info:
            await http.request("POST", "/x?secret=1")
    assert info.value.kind is ErrorKind.PERMANENT
    assert "bad email" in str(info.value)
    assert "secret=1" not in str(info.value)
    assert http.api_calls == 1
    assert info.value.body == {"title": "Invalid Resource", "detail": "bad email"}


async def test_secret_echoed_by_provider_is_masked() -> None:
    def handler(req: httpx.Request) -> httpx.Response:
        return httpx.Response(400, json={"detail": f"key {SECRET} is malformed"})

    http, client, _ = _make(handler)
    async with client:
        with pytest.raises(HTTPError) as info:
            await http.request("GET", "/x")
    assert SECRET not in str(info.value)
    assert "***" in str(info.value)


async def test_401_refreshes_once_and_retries_with_new_credentials() -> None:
    tokens: list[str] = []

    def handler(req: httpx.Request) -> httpx.Response:
        tokens.append(req.headers["authorization"])
        if req.headers["authorization"] == "Bearer fresh":
            return httpx.Response(200)
        return httpx.Response(401, json={"detail": "expired"})

    refreshed = 0

    async def refresh() -> Credentials | None:
        nonlocal refreshed
        refreshed += 1
        return Credentials(access_token="fresh")

    http, client, _ = _make(handler, refresh=refresh)
    async with client:
        await http.request("GET", "/x")
    assert refreshed == 1
    assert tokens == [f"Bearer {SECRET}", "Bearer fresh"]
    assert http.credentials.access_token == "fresh"


async def test_401_after_refresh_is_auth() -> None:
    refreshed = 0

    async def refresh() -> Credentials | None:
        nonlocal refreshed
        refreshed += 1
        return Credentials(access_token="still-bad")

    http, client, _ = _make(lambda r: httpx.Response(401), refresh=refresh)
    async with client:
        with pytest.raises(HTTPError) as info:
            await http.request("GET", "/x")
    assert info.value.kind is ErrorKind.AUTH
    assert refreshed == 1


@pytest.mark.parametrize("status", [401, 403])
async def test_auth_statuses_without_refresh(status: int) -> None:
    http, client, _ = _make(lambda r: httpx.Response(status))
    async with client:
        with pytest.raises(HTTPError) as info:
            await http.request("GET", "/x")
    assert info.value.kind is ErrorKind.AUTH
    assert http.api_calls == 1


async def test_fault_hook_turns_200_into_error() -> None:
    def fault(resp: httpx.Response) -> Fault | None:
        body = resp.json()
        if "Fault" in body:
            return Fault(ErrorKind.PERMANENT, body["Fault"]["Error"][0]["Message"], "6000")
        return None

    def handler(req: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"Fault": {"Error": [{"Message": "business rule"}]}})

    http, client, _ = _make(handler, fault=fault)
    async with client:
        with pytest.raises(HTTPError) as info:
            await http.request("GET", "/x")
    assert info.value.kind is ErrorKind.PERMANENT
    assert info.value.code == "6000"
    assert "business rule" in str(info.value)


async def test_accepted_status_is_returned() -> None:
    http, client, _ = _make(lambda r: httpx.Response(404, json={"detail": "no"}))
    async with client:
        resp = await http.request("GET", "/x", accept={404})
    assert resp.status_code == 404


async def test_malformed_json_body_is_classified() -> None:
    http, client, _ = _make(lambda r: httpx.Response(200, text="<html>oops"))
    async with client:
        with pytest.raises(HTTPError) as info:
            await http.json("GET", "/x")
    assert info.value.kind is ErrorKind.RETRYABLE


def test_classify_status() -> None:
    assert classify_status(401) is ErrorKind.AUTH
    assert classify_status(403) is ErrorKind.AUTH
    assert classify_status(429) is ErrorKind.RETRYABLE
    assert classify_status(502) is ErrorKind.RETRYABLE
    assert classify_status(400) is ErrorKind.PERMANENT
    assert classify_status(404) is ErrorKind.PERMANENT


def test_parse_retry_after_forms() -> None:
    assert parse_retry_after("5") == 5.0
    assert parse_retry_after("  2.5 ") == 2.5
    assert parse_retry_after("-3") == 0.0
    assert parse_retry_after("") is None
    assert parse_retry_after(None) is None
    assert parse_retry_after("soon") is None
    past = format_datetime(NOW - timedelta(seconds=30), usegmt=True)
    assert parse_retry_after(past, NOW) == 0.0


def test_backoff_delay_is_bounded_full_jitter() -> None:
    rng = random.Random(1)
    for attempt in range(12):
        d = backoff_delay(attempt, base=0.5, cap=10.0, rng=rng)
        assert 0.0 <= d <= min(10.0, 0.5 * 2**attempt)


async def test_429_without_documented_wait_backs_off_with_jitter() -> None:
    calls = 0

    def handler(req: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        return httpx.Response(429) if calls == 1 else httpx.Response(200)

    http, client, clock = _make(handler, default_retry_after=0.0, backoff_base=0.5)
    async with client:
        await http.request("GET", "/x")
    assert calls == 2
    assert http.limiter.paused_until is None  # no account-wide pause
    assert 0.0 <= clock.now() <= 0.5


async def test_a_429_holds_every_concurrent_request_of_the_account() -> None:
    import asyncio

    calls: list[float] = []
    clock = ManualClock()

    def handler(req: httpx.Request) -> httpx.Response:
        calls.append(clock.now())
        if len(calls) == 1:
            return httpx.Response(429, headers={"Retry-After": "5"})
        return httpx.Response(200)

    http, client, _ = _make(handler, clock=clock)
    async with client:
        first = asyncio.create_task(http.request("GET", "/a"))
        await clock.settle()
        assert len(calls) == 1
        second = asyncio.create_task(http.request("GET", "/b"))
        await clock.advance(4.9)
        assert len(calls) == 1  # neither the retry nor the other request went out
        await clock.advance(0.1)
        await asyncio.gather(first, second)
    assert len(calls) == 3
    assert calls[1:] == [5.0, 5.0]
