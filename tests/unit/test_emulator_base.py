"""The shared emulator base, through a tiny emulator of a made-up provider."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
from collections.abc import AsyncIterator

import httpx
import pytest
from aiohttp import web

from daemon.provider import EmulatorSettings
from daemon.testing.emulator import (
    BATCH_SIZE,
    Emulator,
    EmulatorServer,
    RateLimiter,
    TokenRegistry,
)


class Tiny(Emulator):
    """Creates widgets; errors look like ``{"fault": {"code", "text"}}``."""

    name = "tiny"

    def error_response(self, status: int, code: str, message: str) -> web.Response:
        return web.json_response({"fault": {"code": code, "text": message}}, status=status)

    def rate_limit(self) -> tuple[float, float]:
        return (10.0, 10.0)

    def routes(self) -> list[web.RouteDef]:
        return [web.post("/widgets", self.create), web.get("/widgets", self.listing)]

    async def create(self, request: web.Request) -> web.Response:
        body = await request.json()
        request[BATCH_SIZE] = 1

        async def handle() -> web.Response:
            widget_id = f"w{len(self.collection('product')) + 1}"
            record = {"id": widget_id, **body}
            self.put("product", widget_id, record, change="created")
            return web.json_response(record, status=201)

        return await self.idempotent(request, request.headers.get("Idempotency-Key"), body,
                                     handle)

    async def listing(self, request: web.Request) -> web.Response:
        return web.json_response(list(self.collection("product").values()))

    def sign_webhook(self, body: bytes, url: str, timestamp: int) -> dict[str, str]:
        mac = hmac.new(self.settings.webhook_secret.encode(), f"{timestamp}.".encode() + body,
                       hashlib.sha256).digest()
        return {"X-Tiny-Signature": f"{timestamp}:{base64.b64encode(mac).decode()}"}

    def webhook_event(self, collection: str, record_id: str, change: str) -> bytes:
        return json.dumps({"type": f"{collection}.{change}", "id": record_id}).encode()


async def serve(
    settings: EmulatorSettings,
) -> AsyncIterator[tuple[EmulatorServer, httpx.AsyncClient]]:
    async with (EmulatorServer(Tiny(settings)) as server,
                httpx.AsyncClient(base_url=server.url, timeout=5.0) as http):
        creds = (await http.get("/_emulator/credentials")).json()
        http.headers["Authorization"] = f"Bearer {creds['access_token']}"
        yield server, http


@pytest.fixture
async def tiny() -> AsyncIterator[tuple[EmulatorServer, httpx.AsyncClient]]:
    async for pair in serve(EmulatorSettings(seed=1)):
        yield pair


async def test_missing_or_bad_token_gets_the_providers_401(
        tiny: tuple[EmulatorServer, httpx.AsyncClient]) -> None:
    _, http = tiny
    response = await http.post("/widgets", json={"n": 1}, headers={"Authorization": "Bearer x"})
    assert response.status_code == 401
    assert response.json()["fault"]["code"] == "unauthorized"


async def test_expired_token_is_refused() -> None:
    async for _, http in serve(EmulatorSettings(access_token_ttl=-1)):
        response = await http.get("/widgets")
        assert response.status_code == 401


async def test_same_key_same_body_replays_and_creates_once(
        tiny: tuple[EmulatorServer, httpx.AsyncClient]) -> None:
    _, http = tiny
    first = await http.post("/widgets", json={"n": 1}, headers={"Idempotency-Key": "k1"})
    second = await http.post("/widgets", json={"n": 1}, headers={"Idempotency-Key": "k1"})
    assert first.status_code == second.status_code == 201
    assert first.json() == second.json()
    store = (await http.get("/_emulator/store")).json()
    assert len(store["product"]) == 1


async def test_same_key_different_body_gets_the_providers_error(
        tiny: tuple[EmulatorServer, httpx.AsyncClient]) -> None:
    _, http = tiny
    await http.post("/widgets", json={"n": 1}, headers={"Idempotency-Key": "k1"})
    reused = await http.post("/widgets", json={"n": 2}, headers={"Idempotency-Key": "k1"})
    assert reused.status_code == 400
    assert reused.json()["fault"]["code"] == "idempotency_key_reused"


async def test_rate_limit_answers_429_with_retry_after(
        tiny: tuple[EmulatorServer, httpx.AsyncClient]) -> None:
    _, http = tiny
    await http.patch("/_emulator/settings", json={"rate_limit_scale": 0.1})
    statuses = [(await http.get("/widgets")) for _ in range(3)]
    limited = [r for r in statuses if r.status_code == 429]
    assert limited, [r.status_code for r in statuses]
    assert int(limited[0].headers["Retry-After"]) >= 1
    assert limited[0].json()["fault"]["code"] == "rate_limited"


async def test_rate_limits_can_be_switched_off(
        tiny: tuple[EmulatorServer, httpx.AsyncClient]) -> None:
    _, http = tiny
    await http.patch("/_emulator/settings", json={"rate_limit_scale": 0.1,
                                                  "enforce_rate_limits": False})
    assert {(await http.get("/widgets")).status_code for _ in range(5)} == {200}


@pytest.mark.parametrize(("knob", "status", "code"), [
    ("error_rate", 500, "internal_error"),
    ("rate_limit_storm", 429, "rate_limited"),
])
async def test_fault_knobs_answer_in_the_providers_format(
        tiny: tuple[EmulatorServer, httpx.AsyncClient], knob: str, status: int, code: str) -> None:
    _, http = tiny
    await http.patch("/_emulator/settings", json={knob: 1.0})
    response = await http.post("/widgets", json={"n": 1})
    assert response.status_code == status
    assert response.json()["fault"]["code"] == code
    assert (await http.get("/_emulator/store")).json() == {}


async def test_reset_drops_the_connection_before_handling(
        tiny: tuple[EmulatorServer, httpx.AsyncClient]) -> None:
    _, http = tiny
    await http.patch("/_emulator/settings", json={"reset_rate": 1.0})
    with pytest.raises(httpx.TransportError):
        await http.post("/widgets", json={"n": 1})
    assert (await http.get("/_emulator/store")).json() == {}


async def test_reset_after_commit_applies_then_drops_and_a_retry_replays(
        tiny: tuple[EmulatorServer, httpx.AsyncClient]) -> None:
    _, http = tiny
    await http.patch("/_emulator/settings", json={"reset_after_commit_rate": 1.0})
    with pytest.raises(httpx.TransportError):
        await http.post("/widgets", json={"n": 1}, headers={"Idempotency-Key": "k9"})
    assert len((await http.get("/_emulator/store")).json()["product"]) == 1
    await http.patch("/_emulator/settings", json={"reset_after_commit_rate": 0.0})
    retry = await http.post("/widgets", json={"n": 1}, headers={"Idempotency-Key": "k9"})
    assert retry.status_code == 201
    assert len((await http.get("/_emulator/store")).json()["product"]) == 1
    log = (await http.get("/_emulator/requests")).json()
    assert [r["fault"] for r in log if r["path"] == "/widgets"] == ["reset_after_commit", None]


async def test_reset_after_commit_spares_reads(
        tiny: tuple[EmulatorServer, httpx.AsyncClient]) -> None:
    _, http = tiny
    await http.patch("/_emulator/settings", json={"reset_after_commit_rate": 1.0})
    assert (await http.get("/widgets")).status_code == 200


async def test_timeout_hangs_past_the_client_timeout() -> None:
    async for _, http in serve(EmulatorSettings(timeout_rate=1.0)):
        with pytest.raises(httpx.TimeoutException):
            await http.get("/widgets", timeout=0.3)


async def test_a_hung_request_is_dropped_after_hang_seconds() -> None:
    async for _, http in serve(EmulatorSettings(timeout_rate=1.0, hang_seconds=0.05)):
        with pytest.raises(httpx.TransportError):
            await http.post("/widgets", json={"n": 1}, timeout=30)
        assert (await http.get("/_emulator/store")).json() == {}


async def test_a_storm_429_carries_the_configured_retry_after(
        tiny: tuple[EmulatorServer, httpx.AsyncClient]) -> None:
    _, http = tiny
    await http.patch("/_emulator/settings",
                     json={"rate_limit_storm": 1.0, "storm_retry_after": 90})
    response = await http.post("/widgets", json={"n": 1})
    assert (response.status_code, response.headers["Retry-After"]) == (429, "90")


async def test_a_slow_answer_comes_late_and_whole(
        tiny: tuple[EmulatorServer, httpx.AsyncClient]) -> None:
    _, http = tiny
    await http.patch("/_emulator/settings", json={"slow_rate": 1.0, "slow_seconds": 0.5})
    with pytest.raises(httpx.ReadTimeout):
        await http.post("/widgets", json={"n": 1}, timeout=0.1)
    answered = await http.post("/widgets", json={"n": 2}, timeout=30)
    assert (answered.status_code, answered.json()["n"]) == (201, 2)
    log = (await http.get("/_emulator/requests")).json()
    assert [r["fault"] for r in log] == ["slow", "slow"]


async def test_a_malformed_answer_is_committed_and_a_retry_replays_the_real_one(
        tiny: tuple[EmulatorServer, httpx.AsyncClient]) -> None:
    _, http = tiny
    await http.patch("/_emulator/settings", json={"malformed_rate": 1.0})
    broken = await http.post("/widgets", json={"n": 1}, headers={"Idempotency-Key": "k1"})
    assert broken.status_code == 201
    with pytest.raises(json.JSONDecodeError):
        json.loads(broken.content)
    await http.patch("/_emulator/settings", json={"malformed_rate": 0.0})
    retry = await http.post("/widgets", json={"n": 1}, headers={"Idempotency-Key": "k1"})
    assert retry.json() == {"id": "w1", "n": 1}
    assert len((await http.get("/_emulator/store")).json()["product"]) == 1


async def test_control_api_settings_requests_and_reset(
        tiny: tuple[EmulatorServer, httpx.AsyncClient]) -> None:
    _, http = tiny
    await http.post("/widgets", json={"n": 1}, headers={"Idempotency-Key": "k1"})
    log = (await http.get("/_emulator/requests")).json()
    assert log[0]["method"] == "POST"
    assert log[0]["path"] == "/widgets"
    assert log[0]["status"] == 201
    assert log[0]["idempotency_key"] == "k1"
    assert log[0]["account"] == "default"
    assert log[0]["batch_size"] == 1

    bad = await http.patch("/_emulator/settings", json={"no_such_knob": 1})
    assert bad.status_code == 400
    updated = await http.patch("/_emulator/settings", json={"latency": 0.0, "error_rate": 0.0})
    assert updated.json()["error_rate"] == 0.0

    await http.post("/_emulator/reset")
    assert (await http.get("/_emulator/store")).json() == {}
    assert (await http.get("/_emulator/requests")).json() == []
    # tokens survive a reset; idempotency does not
    again = await http.post("/widgets", json={"n": 2}, headers={"Idempotency-Key": "k1"})
    assert again.status_code == 201


async def test_control_webhook_builds_signs_and_delivers() -> None:
    received: list[tuple[dict[str, str], bytes]] = []

    async def sink(request: web.Request) -> web.Response:
        received.append((dict(request.headers), await request.read()))
        return web.Response(status=204)

    sink_app = web.Application()
    sink_app.router.add_post("/hook", sink)
    async with EmulatorServer(sink_app) as sink_server:
        hook = sink_server.url + "/hook"
        async for _server, http in serve(EmulatorSettings(webhook_url=hook, webhook_secret="s3")):
            answer = (await http.post("/_emulator/webhook", json={
                "collection": "product", "id": "w1", "change": "updated", "timestamp": 100,
            })).json()
            assert answer["url"] == hook
            assert json.loads(answer["body"]) == {"type": "product.updated", "id": "w1"}
            expected = base64.b64encode(hmac.new(b"s3", b"100." + answer["body"].encode(),
                                                 hashlib.sha256).digest()).decode()
            assert answer["headers"]["X-Tiny-Signature"] == f"100:{expected}"
            assert received[0][1] == answer["body"].encode()

            # a change through the API is pushed too (in the background)
            await http.post("/widgets", json={"n": 1})
            for _ in range(50):
                if len(received) == 2:
                    break
                await asyncio.sleep(0.02)
            assert json.loads(received[1][1]) == {"type": "product.created", "id": "w1"}


def test_token_registry_rotation_and_revocation() -> None:
    tokens = TokenRegistry("t")
    refresh = tokens.issue_refresh("acct")
    pair = tokens.refresh(refresh.value, access_ttl=60, rotate=True)
    assert pair is not None
    access, new_refresh = pair
    assert new_refresh.value != refresh.value
    assert tokens.lookup(refresh.value, "refresh") is None
    assert tokens.lookup(access.value) is not None
    same = tokens.refresh(new_refresh.value, access_ttl=60, rotate=False)
    assert same is not None
    assert same[1].value == new_refresh.value
    assert tokens.revoke_account("acct") >= 2
    assert tokens.lookup(access.value) is None


def test_rate_limiter_refills_over_time() -> None:
    limiter = RateLimiter(rate=2.0, burst=1)
    assert limiter.take("a", now=0.0) == 0.0
    assert limiter.take("a", now=0.1) == pytest.approx(0.4)
    assert limiter.take("b", now=0.1) == 0.0
    assert limiter.take("a", now=0.6) == 0.0


async def test_an_answer_broken_on_purpose_is_left_out_of_the_response_audit() -> None:
    from daemon.testing.openapi import RESPONSE_AUDIT
    from plugins.stripe.emulator import StripeEmulator

    emulator = StripeEmulator(EmulatorSettings(seed=3, malformed_rate=1.0))
    if emulator.description is None:
        pytest.skip("no Stripe API description to audit against")
    async with (EmulatorServer(emulator) as server,
                httpx.AsyncClient(base_url=server.url, timeout=10) as http):
        key = (await http.get("/_emulator/credentials")).json()["api_key"]
        before = (RESPONSE_AUDIT.checked, list(RESPONSE_AUDIT.problems))
        broken = await http.post("/v1/customers", data={"email": "ada@example.com"},
                                 auth=(key, ""))
        assert broken.status_code == 200
        with pytest.raises(json.JSONDecodeError):
            json.loads(broken.content)
        assert (RESPONSE_AUDIT.checked, RESPONSE_AUDIT.problems) == before
        emulator.update_settings({"malformed_rate": 0.0})
        whole = await http.get("/v1/customers", auth=(key, ""))
        assert whole.status_code == 200
        assert RESPONSE_AUDIT.checked == before[0] + 1
