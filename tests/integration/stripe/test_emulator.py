"""The Stripe emulator's own semantics: Connect OAuth, webhooks, errors, parameters."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from urllib.parse import parse_qs, urlparse

from daemon.provider import Entity, WebhookRequest
from plugins.stripe.emulator import CLIENT_ID, CONNECTED_ACCOUNT, decode_form
from plugins.stripe.provider import StripeProvider
from tests.integration.stripe.conftest import Stripe, outbound

PROVIDER = StripeProvider()


def test_form_decoding_nests_brackets() -> None:
    assert decode_form({"a[b]": "1", "c": "2"}) == {"a": {"b": "1"}, "c": "2"}


async def test_connect_oauth_code_and_refresh(stripe: Stripe) -> None:
    creds = await stripe.credentials()
    redirect = await stripe.control.get("/oauth/authorize", params={
        "client_id": CLIENT_ID, "response_type": "code", "scope": "read_write",
        "state": "s1", "redirect_uri": "https://syncd.example/cb"}, follow_redirects=False)
    code = parse_qs(urlparse(redirect.headers["Location"]).query)["code"][0]
    token = (await stripe.control.post("/oauth/token", data={
        "grant_type": "authorization_code", "code": code, "client_secret": creds.api_key,
    })).json()
    assert token["stripe_user_id"] == CONNECTED_ACCOUNT
    assert token["token_type"] == "bearer"
    assert "expires_in" not in token  # Connect access tokens do not expire
    account = await stripe.control.get("/v1/account", headers={
        "Authorization": f"Bearer {token['access_token']}"})
    assert account.json()["id"] == CONNECTED_ACCOUNT
    refreshed = (await stripe.control.post("/oauth/token", data={
        "grant_type": "refresh_token", "refresh_token": token["refresh_token"],
        "client_secret": creds.api_key})).json()
    assert refreshed["stripe_user_id"] == CONNECTED_ACCOUNT
    bad = await stripe.control.post("/oauth/token", data={
        "grant_type": "authorization_code", "code": code, "client_secret": creds.api_key})
    assert bad.json()["error"] == "invalid_grant"
    gone = await stripe.control.post("/oauth/deauthorize", data={
        "client_id": CLIENT_ID, "stripe_user_id": CONNECTED_ACCOUNT,
        "client_secret": creds.api_key})
    assert gone.json() == {"stripe_user_id": CONNECTED_ACCOUNT}
    after = await stripe.control.get("/v1/account", headers={
        "Authorization": f"Bearer {token['access_token']}"})
    assert after.status_code == 401


async def test_unknown_parameters_and_missing_objects_are_refused(stripe: Stripe) -> None:
    creds = await stripe.credentials()
    headers = {"Authorization": f"Bearer {creds.api_key}"}
    unknown = await stripe.control.post("/v1/customers", data={"emial": "x@y.z"},
                                        headers=headers)
    assert unknown.status_code == 400
    assert unknown.json()["error"]["param"] == "emial"
    missing = await stripe.control.get("/v1/products/prod_nope", headers=headers)
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "resource_missing"
    immutable = await stripe.control.post("/v1/prices/price_x", data={"unit_amount": "5"},
                                          headers=headers)
    assert immutable.status_code == 400


async def test_signed_webhooks_verify_parse_and_go_stale(stripe: Stripe) -> None:
    await stripe.configure(webhook_secret="whsec_emu")
    client = await stripe.client()
    [made] = await client.push(Entity.CUSTOMER, [outbound(Entity.CUSTOMER, 1)])
    data = (await stripe.control.post("/_emulator/webhook", json={
        "collection": "customer", "id": made.remote_id, "change": "updated"})).json()
    delivery = WebhookRequest(headers=data["headers"], body=data["body"].encode(),
                              url=data["url"], received_at=datetime.now(UTC))
    assert PROVIDER.verify_webhook(delivery, "whsec_emu").ok
    [change] = PROVIDER.parse_webhook(delivery)
    assert change.entity is Entity.CUSTOMER
    assert change.remote_id == made.remote_id
    stale = (await stripe.control.post("/_emulator/webhook", json={
        "collection": "customer", "id": made.remote_id, "change": "updated",
        "timestamp": int(time.time()) - 3600})).json()
    old = WebhookRequest(headers=stale["headers"], body=stale["body"].encode(),
                         url=stale["url"], received_at=datetime.now(UTC))
    assert not PROVIDER.verify_webhook(old, "whsec_emu").ok
