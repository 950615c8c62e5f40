"""The admin API: JWT checks, tenant isolation, and answers that match the OpenAPI
description."""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import jsonschema
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from daemon.http.openapi import OPENAPI
from tests.integration import webhook_support as ws

SECRET = "api-test-secret-0123456789abcdef0123456789"
ISSUER = "https://platform.example"
AUDIENCE = "syncd"
API = {"api_jwt_secret": SECRET, "api_jwt_issuer": ISSUER, "api_jwt_audience": AUDIENCE}
STRIPE_ADMIN = {"role": "venue_admin", "venues": [str(ws.VENUE_STRIPE)]}


def token(extra: dict[str, Any] | None = None, *, key: Any = SECRET,
          algorithm: str = "HS256", **claims: Any) -> str:
    now = int(time.time())
    body: dict[str, Any] = {"iss": ISSUER, "aud": AUDIENCE, "sub": "user-1", "iat": now,
                            "exp": now + 300, **(extra or {}), **claims}
    return jwt.encode({k: v for k, v in body.items() if v is not None}, key,
                      algorithm=algorithm)


def bearer(value: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {value}"}


def check(body: Any, path: str, method: str, status: str) -> None:
    """``body`` is what the OpenAPI description says this operation answers."""
    response = OPENAPI["paths"][path][method]["responses"][status]
    schema = {**response["content"]["application/json"]["schema"],
              "components": OPENAPI["components"]}
    jsonschema.validate(body, schema, format_checker=jsonschema.FormatChecker())


@pytest.fixture
async def api(pool: asyncpg.Pool, tmp_path: Path) -> Any:
    await ws.connect_venues(pool)
    async with ws.running_app(pool, tmp_path, **API) as server, \
            httpx.AsyncClient(base_url=server.url + "/api/v1") as http:
        yield http


async def test_a_platform_admin_sees_every_integration(api: httpx.AsyncClient) -> None:
    response = await api.get("/integrations",
                             headers=bearer(token(role="platform_admin")))
    assert response.status_code == 200
    check(response.json(), "/integrations", "get", "200")
    assert len(response.json()["integrations"]) == 5


async def test_a_venue_admin_sees_only_their_venues(api: httpx.AsyncClient) -> None:
    headers = bearer(token(STRIPE_ADMIN))
    mine = await api.get("/integrations", headers=headers)
    other = await api.get("/integrations", params={"venue": str(ws.VENUE_SQUARE)},
                          headers=headers)
    assert [i["venue_id"] for i in mine.json()["integrations"]] == [str(ws.VENUE_STRIPE)]
    assert other.json() == {"integrations": []}


async def test_another_venues_integration_is_indistinguishable_from_a_missing_one(
    api: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    headers = bearer(token(STRIPE_ADMIN))
    own = await api.get(f"/venues/{ws.VENUE_STRIPE}/integrations/stripe", headers=headers)
    theirs = await api.get(f"/venues/{ws.VENUE_SQUARE}/integrations/square", headers=headers)
    missing = await api.get(f"/venues/{uuid.uuid4()}/integrations/square", headers=headers)
    sync_theirs = await api.post(f"/venues/{ws.VENUE_SQUARE}/integrations/square/sync",
                                 headers=headers)
    assert own.status_code == 200
    check(own.json(), "/venues/{venue}/integrations/{provider}", "get", "200")
    assert (theirs.status_code, theirs.json()) == (missing.status_code, missing.json())
    assert theirs.status_code == 404
    assert (sync_theirs.status_code, sync_theirs.json()) == (404, missing.json())
    assert await pool.fetchval("SELECT count(*) FROM sync_queue") == 0


async def test_sync_now_queues_a_high_lane_job(api: httpx.AsyncClient,
                                               pool: asyncpg.Pool) -> None:
    headers = bearer(token(STRIPE_ADMIN))
    path = f"/venues/{ws.VENUE_STRIPE}/integrations/stripe/sync"
    first = await api.post(path, json={"entity": "customer"}, headers=headers)
    again = await api.post(path, json={"entity": "customer"}, headers=headers)
    bad = await api.post(path, json={"entity": "invoice"}, headers=headers)
    assert first.status_code == 202
    check(first.json(), "/venues/{venue}/integrations/{provider}/sync", "post", "202")
    assert again.json()["coalesced"] is True
    assert bad.status_code == 400
    assert bad.json()["error"] == ("entity must be product, customer, transaction, inventory "
                                   "or all"), bad.text
    rows = await pool.fetch("SELECT venue_id, provider, entity_type, lane FROM sync_queue")
    assert [tuple(r) for r in rows] == [(ws.VENUE_STRIPE, "stripe", "customer", "HIGH")]


async def test_pause_holds_sync_now_until_resume(api: httpx.AsyncClient,
                                                 pool: asyncpg.Pool) -> None:
    headers = bearer(token(STRIPE_ADMIN, sub="ops@venue"))
    base = f"/venues/{ws.VENUE_STRIPE}/integrations/stripe"
    paused = await api.post(base + "/pause", json={"reason": "card reader swap"},
                            headers=headers)
    assert paused.status_code == 200, paused.text
    check(paused.json(), "/venues/{venue}/integrations/{provider}/pause", "post", "200")
    integration = paused.json()["integration"]
    assert paused.json()["changed"] is True
    assert (integration["paused"], integration["paused_by"], integration["pause_reason"]) == (
        True, "api:ops@venue", "card reader swap")
    again = await api.post(base + "/pause", headers=headers)
    assert again.json()["changed"] is False
    assert again.json()["integration"]["paused_at"] == integration["paused_at"]

    refused = await api.post(base + "/sync", headers=headers)
    assert refused.status_code == 409
    assert refused.json() == {"error": "the integration is paused; resume it first"}
    shown = await api.get(base, headers=headers)
    assert shown.json()["integration"]["paused"] is True
    listed = await api.get("/integrations", headers=bearer(token(role="platform_admin")))
    assert {(i["venue_id"], i["paused"]) for i in listed.json()["integrations"]
            if i["paused"]} == {(str(ws.VENUE_STRIPE), True)}
    assert await pool.fetchval("SELECT count(*) FROM sync_queue") == 0

    resumed = await api.post(base + "/resume", headers=headers)
    assert resumed.status_code == 200
    assert resumed.json()["changed"] is True
    assert resumed.json()["integration"]["paused"] is False
    assert resumed.json()["integration"]["paused_at"] is None
    queued = await api.post(base + "/sync", headers=headers)
    assert queued.status_code == 202


async def test_another_venues_integration_cannot_be_paused_or_resumed(
        api: httpx.AsyncClient, pool: asyncpg.Pool) -> None:
    headers = bearer(token(STRIPE_ADMIN))
    await pool.execute("UPDATE integration_configs SET paused_at = now() "
                       "WHERE venue_id = $1", ws.VENUE_MAILCHIMP)
    for action in ("pause", "resume"):
        theirs = await api.post(
            f"/venues/{ws.VENUE_SQUARE}/integrations/square/{action}", headers=headers)
        paused_theirs = await api.post(
            f"/venues/{ws.VENUE_MAILCHIMP}/integrations/mailchimp/{action}", headers=headers)
        missing = await api.post(
            f"/venues/{uuid.uuid4()}/integrations/square/{action}", headers=headers)
        assert theirs.status_code == 404
        assert (theirs.status_code, theirs.json()) == (missing.status_code, missing.json())
        assert (paused_theirs.status_code, paused_theirs.json()) == (
            missing.status_code, missing.json())
    paused = dict(await pool.fetch("SELECT venue_id, paused_at IS NOT NULL "
                                   "FROM integration_configs"))
    assert {v for v, p in paused.items() if p} == {ws.VENUE_MAILCHIMP}


@pytest.mark.parametrize("body", [{"reason": 7}, {"reason": "x" * 501}, [1], "text"])
async def test_a_bad_pause_body_is_400_and_pauses_nothing(
        api: httpx.AsyncClient, pool: asyncpg.Pool, body: Any) -> None:
    response = await api.post(f"/venues/{ws.VENUE_STRIPE}/integrations/stripe/pause",
                              json=body, headers=bearer(token(STRIPE_ADMIN)))
    assert response.status_code == 400, response.text
    check(response.json(), "/venues/{venue}/integrations/{provider}/pause", "post", "400")
    assert await pool.fetchval("SELECT count(*) FROM integration_configs "
                               "WHERE paused_at IS NOT NULL") == 0


async def test_webhook_events_are_scoped_by_venue(api: httpx.AsyncClient,
                                                  pool: asyncpg.Pool) -> None:
    for venue, external in ((ws.VENUE_STRIPE, "a"), (ws.VENUE_MAILCHIMP, "b"), (None, "c")):
        await pool.execute(
            "INSERT INTO integration_webhooks (venue_id, provider, event_type, external_id, "
            "payload) VALUES ($1, 'stripe', 'customer.updated', $2, '{}')", venue, external)
    venue_admin = await api.get("/webhooks", headers=bearer(token(STRIPE_ADMIN)))
    platform = await api.get("/webhooks", params={"status": "pending"},
                             headers=bearer(token(role="platform_admin")))
    assert [e["external_id"] for e in venue_admin.json()["events"]] == ["a"]
    check(platform.json(), "/webhooks", "get", "200")
    assert sorted(e["external_id"] for e in platform.json()["events"]) == ["a", "b", "c"]


@pytest.mark.parametrize("params", [{"provider": "stri\x00pe"}, {"status": "\x00"}])
async def test_a_query_value_postgres_cannot_hold_is_400_not_503(
        api: httpx.AsyncClient, params: dict[str, str]) -> None:
    # Found by schemathesis: a NUL reached Postgres, which refused it, and the route answered
    # as if the database were down.
    response = await api.get("/webhooks", params=params,
                             headers=bearer(token(role="platform_admin")))
    assert response.status_code == 400, response.text
    assert "NUL" in response.json()["error"]


def _bad_tokens() -> dict[str, str | None]:
    now = int(time.time())
    unsigned = jwt.encode({"iss": ISSUER, "aud": AUDIENCE, "exp": now + 300,
                           "role": "platform_admin"}, None, algorithm="none")
    return {
        "expired": token(role="platform_admin", exp=now - 120),
        "not yet valid": token(role="platform_admin", nbf=now + 600),
        "wrong signature": token(role="platform_admin", key=SECRET + "x"),
        "wrong issuer": token(role="platform_admin", iss="https://evil.example"),
        "wrong audience": token(role="platform_admin", aud="someone-else"),
        "alg none": unsigned,
        "no expiry": token(role="platform_admin", exp=None),
        "venues not a list": token(role="venue_admin", venues=str(ws.VENUE_STRIPE)),
        "venues not ids": token(role="venue_admin", venues=["blue-door"]),
        "garbage": "not.a.jwt",
        "missing": None,
    }


@pytest.mark.parametrize("case", sorted(_bad_tokens()))
async def test_bad_tokens_are_401(api: httpx.AsyncClient, case: str) -> None:
    value = _bad_tokens()[case]
    headers = {} if value is None else bearer(value)
    response = await api.get("/integrations", headers=headers)
    assert response.status_code == 401, response.text
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    check(response.json(), "/integrations", "get", "401")


@pytest.mark.parametrize("role", [None, "viewer", ["platform_admin"]])
async def test_a_token_without_an_admin_role_is_403(api: httpx.AsyncClient,
                                                    role: Any) -> None:
    response = await api.get("/integrations", headers=bearer(token(role=role)))
    assert response.status_code == 403


async def test_openapi_is_served_without_a_token(api: httpx.AsyncClient) -> None:
    response = await api.get("/openapi.json")
    assert response.status_code == 200
    assert response.json()["openapi"].startswith("3.1")
    assert set(response.json()["paths"]) == {
        "/integrations", "/venues/{venue}/integrations/{provider}",
        "/venues/{venue}/integrations/{provider}/sync",
        "/venues/{venue}/integrations/{provider}/pause",
        "/venues/{venue}/integrations/{provider}/resume", "/webhooks", "/queue",
        "/dead-letters", "/dead-letters/{id}/replay", "/inbound-changes"}


async def test_rs256_tokens_verify_with_the_public_key_and_hs256_is_refused(
    pool: asyncpg.Pool, tmp_path: Path
) -> None:
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public_pem = private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    key_file = tmp_path / "platform.pem"
    key_file.write_text(public_pem)
    settings = {"api_jwt_public_key": str(key_file), "api_jwt_issuer": ISSUER,
                "api_jwt_audience": AUDIENCE}
    async with ws.running_app(pool, tmp_path, **settings) as server, \
            httpx.AsyncClient(base_url=server.url + "/api/v1") as http:
        good = await http.get("/integrations", headers=bearer(
            token(role="platform_admin", key=private, algorithm="RS256")))
        confused = await http.get("/integrations", headers=bearer(
            token(role="platform_admin", key=SECRET, algorithm="HS256")))
    assert good.status_code == 200
    assert confused.status_code == 401


async def test_without_keys_the_api_accepts_no_one(pool: asyncpg.Pool, tmp_path: Path) -> None:
    async with ws.running_app(pool, tmp_path) as server, httpx.AsyncClient() as http:
        response = await http.get(server.url + "/api/v1/integrations",
                                  headers=bearer(token(role="platform_admin")))
    assert response.status_code == 503
    assert response.json() == {"error": "admin API authentication is not configured"}


async def _dead_letter(pool: asyncpg.Pool, venue: uuid.UUID, provider: str) -> int:
    return int(await pool.fetchval(
        "INSERT INTO sync_queue (venue_id, provider, entity_type, status, attempts, "
        "last_error, completed_at) VALUES ($1, $2, 'customer', 'dead_letter', 10, "
        "'HTTP 500', now()) RETURNING id", venue, provider))


async def test_dead_letters_are_listed_and_replayed_within_the_callers_venues(
    api: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    mine = await _dead_letter(pool, ws.VENUE_STRIPE, "stripe")
    theirs = await _dead_letter(pool, ws.VENUE_SQUARE, "square")
    headers = bearer(token(STRIPE_ADMIN))
    listed = await api.get("/dead-letters", headers=headers)
    replay_theirs = await api.post(f"/dead-letters/{theirs}/replay", headers=headers)
    replay_missing = await api.post("/dead-letters/999999/replay", headers=headers)
    replay_mine = await api.post(f"/dead-letters/{mine}/replay", headers=headers)
    check(listed.json(), "/dead-letters", "get", "200")
    assert [d["id"] for d in listed.json()["dead_letters"]] == [mine]
    assert (replay_theirs.status_code, replay_theirs.json()) == (
        replay_missing.status_code, replay_missing.json())
    assert replay_theirs.status_code == 404
    assert replay_mine.json() == {"replayed": [mine]}
    statuses = dict(await pool.fetch("SELECT id, status FROM sync_queue"))
    assert statuses == {mine: "pending", theirs: "dead_letter"}


async def test_the_queue_overview_is_for_platform_admins(api: httpx.AsyncClient,
                                                         pool: asyncpg.Pool) -> None:
    await _dead_letter(pool, ws.VENUE_SQUARE, "square")
    venue_admin = await api.get("/queue", headers=bearer(token(STRIPE_ADMIN)))
    platform = await api.get("/queue", headers=bearer(token(role="platform_admin")))
    assert venue_admin.status_code == 403
    assert platform.status_code == 200
    check(platform.json(), "/queue", "get", "200")
    assert platform.json()["depth"]["NORMAL"]["dead_letter"] == 1


async def test_the_api_answers_503_while_the_database_is_down(db_url: str,
                                                              tmp_path: Path) -> None:
    from daemon.db import init_connection

    pool = await asyncpg.create_pool(db_url, min_size=0, max_size=2, init=init_connection)
    async with ws.running_app(pool, tmp_path, **API) as server, \
            httpx.AsyncClient(base_url=server.url + "/api/v1") as http:
        await pool.close()
        response = await http.get("/integrations", headers=bearer(token(role="platform_admin")))
    assert response.status_code == 503
    assert response.json() == {"error": "the database is unavailable; try again"}
