"""The Square emulator's own semantics: OAuth, webhooks, errors, pagination."""

from __future__ import annotations

import asyncio
import base64
import hashlib
from datetime import UTC, datetime
from urllib.parse import parse_qs, urlparse

from daemon.provider import Entity, WebhookRequest
from plugins.square.emulator import CLIENT_ID, CLIENT_SECRET
from plugins.square.provider import SquareProvider
from tests.integration.square.conftest import Square, outbound

PROVIDER = SquareProvider()


async def _code(square: Square, **extra: str) -> str:
    response = await square.control.get("/oauth2/authorize", params={
        "client_id": CLIENT_ID, "scope": "CUSTOMERS_WRITE ITEMS_WRITE", "state": "s1",
        "redirect_uri": "https://syncd.example/cb", **extra}, follow_redirects=False)
    assert response.status_code == 302
    query = parse_qs(urlparse(response.headers["Location"]).query)
    assert query["state"] == ["s1"]
    return query["code"][0]


async def test_code_flow_refresh_tokens_do_not_rotate(square: Square) -> None:
    code = await _code(square)
    token = (await square.control.post("/oauth2/token", json={
        "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET, "grant_type":
        "authorization_code", "code": code})).json()
    assert token["token_type"] == "bearer"
    assert datetime.fromisoformat(token["expires_at"].replace("Z", "+00:00")) > datetime.now(UTC)
    assert "refresh_token_expires_at" not in token
    again = (await square.control.post("/oauth2/token", json={
        "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET, "grant_type": "refresh_token",
        "refresh_token": token["refresh_token"]})).json()
    assert again["refresh_token"] == token["refresh_token"]
    assert again["access_token"] != token["access_token"]
    reused = await square.control.post("/oauth2/token", json={
        "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET, "grant_type": "authorization_code",
        "code": code})
    assert reused.status_code == 401
    assert reused.json()["errors"][0]["category"] == "AUTHENTICATION_ERROR"


async def test_pkce_refresh_tokens_rotate_and_are_single_use(square: Square) -> None:
    verifier = "v" * 64
    challenge = base64.urlsafe_b64encode(
        hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    code = await _code(square, code_challenge=challenge)
    token = (await square.control.post("/oauth2/token", json={
        "client_id": CLIENT_ID, "grant_type": "authorization_code", "code": code,
        "code_verifier": verifier})).json()
    assert "refresh_token_expires_at" in token
    rotated = (await square.control.post("/oauth2/token", json={
        "client_id": CLIENT_ID, "grant_type": "refresh_token",
        "refresh_token": token["refresh_token"]})).json()
    assert rotated["refresh_token"] != token["refresh_token"]
    stale = await square.control.post("/oauth2/token", json={
        "client_id": CLIENT_ID, "grant_type": "refresh_token",
        "refresh_token": token["refresh_token"]})
    assert stale.status_code == 401


async def test_revoke_ends_every_token_of_the_seller(square: Square) -> None:
    creds = await square.credentials()
    bearer = {"Authorization": f"Bearer {creds.access_token}"}
    assert (await square.control.get("/v2/locations", headers=bearer)).status_code == 200
    refused = await square.control.post("/oauth2/revoke", json={
        "client_id": CLIENT_ID, "access_token": creds.access_token},
        headers={"Authorization": "Client wrong"})
    assert refused.status_code == 401
    revoked = await square.control.post("/oauth2/revoke", json={
        "client_id": CLIENT_ID, "access_token": creds.access_token},
        headers={"Authorization": f"Client {CLIENT_SECRET}"})
    assert revoked.json() == {"success": True}
    after = await square.control.get("/v2/locations", headers=bearer)
    assert after.status_code == 401
    assert after.json()["errors"][0]["code"] == "UNAUTHORIZED"


async def test_expired_tokens_get_401(square: Square) -> None:
    await square.configure(access_token_ttl=-1.0)
    square.emulator.tokens.revoke(square.emulator.default_credentials()["access_token"])
    creds = await square.credentials()  # a fresh, already expired token
    response = await square.control.get(
        "/v2/locations", headers={"Authorization": f"Bearer {creds.access_token}"})
    assert response.status_code == 401


async def test_signed_webhooks_verify_and_parse(square: Square) -> None:
    await square.configure(webhook_secret="sq-key")
    client = await square.client()
    [made] = await client.push(Entity.CUSTOMER, [outbound(Entity.CUSTOMER, 1)])
    data = (await square.control.post("/_emulator/webhook", json={
        "collection": "customer", "id": made.remote_id, "change": "updated",
        "url": "https://syncd.example/webhooks/square"})).json()
    delivery = WebhookRequest(headers=data["headers"], body=data["body"].encode(),
                              url=data["url"], received_at=datetime.now(UTC))
    verdict = PROVIDER.verify_webhook(delivery, "sq-key")
    assert verdict.ok, verdict.reason
    [change] = PROVIDER.parse_webhook(delivery)
    assert change.remote_id == made.remote_id
    assert change.change == "updated"
    assert change.payload["customer"]["email_address"] == "buyer1@example.com"
    assert not PROVIDER.verify_webhook(delivery, "other-key").ok
    moved = WebhookRequest(headers=data["headers"], body=data["body"].encode(),
                           url="https://elsewhere.example/hook", received_at=datetime.now(UTC))
    assert not PROVIDER.verify_webhook(moved, "sq-key").ok


async def test_a_concurrent_catalog_write_gets_429(square: Square) -> None:
    square.emulator.catalog_write_seconds = 0.5
    creds = await square.credentials()
    headers = {"Authorization": f"Bearer {creds.access_token}"}
    url = square.server.url + "/v2/catalog/batch-upsert"

    def body(key: str) -> dict[str, object]:
        return {"idempotency_key": key, "batches": [{"objects": [
            {"type": "ITEM", "id": "#a", "item_data": {"name": key}}]}]}

    first = asyncio.create_task(square.http.post(url, json=body("k1"), headers=headers))
    await asyncio.sleep(0.1)
    second = await square.http.post(url, json=body("k2"), headers=headers)
    assert second.status_code == 429
    assert second.json()["errors"][0] == {"category": "RATE_LIMIT_ERROR",
                                          "code": "RATE_LIMITED",
                                          "detail": "Rate limit exceeded."}
    assert "Retry-After" not in second.headers
    assert (await first).status_code == 200
