"""The Square emulator's inventory: BatchChangeInventory, counts, history, POS sales, webhooks.

Every request here is checked against Square's api.json by the emulator and every answer by
the suite's response audit, so these tests also show the shapes fit the description.
"""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from aiohttp import web

from daemon.provider import Entity, WebhookRequest
from daemon.testing.emulator import EmulatorServer
from plugins.square.emulator import LOCATION_ID, MAX_INVENTORY_CHANGES
from plugins.square.provider import SquareProvider
from plugins.square.webhooks import SIGNATURE_HEADER, sign
from tests.integration.square.conftest import Square, outbound

PROVIDER = SquareProvider()


def _iso(moment: datetime) -> str:
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _adjust(variation: str, quantity: int, *, from_state: str = "NONE",
            to_state: str = "IN_STOCK", when: datetime | None = None,
            reference: str | None = None) -> dict[str, Any]:
    adjustment: dict[str, Any] = {
        "catalog_object_id": variation, "location_id": LOCATION_ID, "from_state": from_state,
        "to_state": to_state, "quantity": str(quantity),
        "occurred_at": _iso(when or datetime.now(UTC))}
    if reference:
        adjustment["reference_id"] = reference
    return {"type": "ADJUSTMENT", "adjustment": adjustment}


def _count(variation: str, quantity: int, when: datetime | None = None) -> dict[str, Any]:
    return {"type": "PHYSICAL_COUNT", "physical_count": {
        "catalog_object_id": variation, "location_id": LOCATION_ID, "state": "IN_STOCK",
        "quantity": str(quantity), "occurred_at": _iso(when or datetime.now(UTC))}}


async def _variations(square: Square, count: int) -> list[str]:
    client = await square.client()
    results = await client.push(Entity.PRODUCT, [outbound(Entity.PRODUCT, i)
                                                 for i in range(count)])
    assert all(r.ok for r in results)
    items = {i["id"]: i for i in await square.store("product")}
    return [items[str(r.remote_id)]["item_data"]["variations"][0]["id"] for r in results]


async def _post(square: Square, path: str, body: dict[str, Any]) -> httpx.Response:
    creds = await square.credentials()
    return await square.http.post(square.server.url + path, json=body, headers={
        "Authorization": f"Bearer {creds.access_token}"})


def _quantities(counts: list[dict[str, Any]]) -> dict[str, str]:
    return {c["catalog_object_id"]: c["quantity"] for c in counts}


async def test_adjustments_and_counts_are_square_s_arithmetic(square: Square) -> None:
    [v1, v2] = await _variations(square, 2)
    response = await _post(square, "/v2/inventory/changes/batch-create", {
        "idempotency_key": "k1",
        "changes": [_adjust(v1, 10), _adjust(v2, 4), _adjust(v1, 3, from_state="IN_STOCK",
                                                             to_state="SOLD")]})
    assert response.status_code == 200, response.text
    body = response.json()
    assert _quantities(body["counts"]) == {v1: "7", v2: "4"}
    assert {c["type"] for c in body["changes"]} == {"ADJUSTMENT"}
    assert all(c["adjustment"]["id"] and c["adjustment"]["created_at"]
               for c in body["changes"])
    counts = await _post(square, "/v2/inventory/counts/batch-retrieve",
                         {"catalog_object_ids": [v1], "location_ids": [LOCATION_ID]})
    assert _quantities(counts.json()["counts"]) == {v1: "7"}


async def test_a_physical_count_wins_over_earlier_adjustments_only(square: Square) -> None:
    [variation] = await _variations(square, 1)
    now = datetime.now(UTC)
    await _post(square, "/v2/inventory/changes/batch-create", {
        "idempotency_key": "a", "changes": [_adjust(variation, 20, when=now - timedelta(
            minutes=30))]})
    await _post(square, "/v2/inventory/changes/batch-create", {
        "idempotency_key": "b", "changes": [_count(variation, 12, now - timedelta(minutes=10))]})
    # An offline sale reported late lands before the count, so the count stays 12 ...
    assert square.emulator.pos_sale(variation, 2, occurred_at=now - timedelta(minutes=20))
    # ... and one made after the count lowers it.
    sold = square.emulator.pos_sale(variation, 1)
    assert sold is not None
    assert sold["quantity"] == "11"


async def test_more_than_100_changes_are_refused_whole(square: Square) -> None:
    [variation] = await _variations(square, 1)
    changes = [_adjust(variation, 1) for _ in range(MAX_INVENTORY_CHANGES + 1)]
    response = await _post(square, "/v2/inventory/changes/batch-create",
                           {"idempotency_key": "big", "changes": changes})
    assert response.status_code == 400
    [error] = response.json()["errors"]
    assert (error["code"], error["field"]) == ("ARRAY_LENGTH_TOO_LONG", "changes")
    assert MAX_INVENTORY_CHANGES == 100  # Square's documented value
    assert await square.store("inventory") == []
    ok = await _post(square, "/v2/inventory/changes/batch-create",
                     {"idempotency_key": "fits", "changes": changes[:100]})
    assert ok.status_code == 200
    assert _quantities(ok.json()["counts"]) == {variation: "100"}


async def test_a_bad_change_refuses_the_request_and_names_each_field(square: Square) -> None:
    [variation] = await _variations(square, 1)
    old = datetime.now(UTC) - timedelta(hours=25)
    response = await _post(square, "/v2/inventory/changes/batch-create", {
        "idempotency_key": "bad", "changes": [
            _adjust(variation, 5),
            _adjust("NOSUCHVARIATION", 1),
            _adjust(variation, 1, when=old),
            _adjust(variation, 1, from_state="SOLD_ONLINE"),
            _adjust(variation, 1, from_state="SOLD", to_state="WASTE"),
            {"type": "ADJUSTMENT", "adjustment": {**_adjust(variation, 1)["adjustment"],
                                                  "quantity": "0"}},
            {"type": "PHYSICAL_COUNT", "physical_count": {
                **_count(variation, 3)["physical_count"], "state": "WASTE"}},
        ]})
    assert response.status_code == 400
    fields = {(e["code"], e["field"]) for e in response.json()["errors"]}
    assert fields == {
        ("NOT_FOUND", "changes[1].adjustment.catalog_object_id"),
        ("INVALID_TIME", "changes[2].adjustment.occurred_at"),
        ("INVALID_VALUE", "changes[3].adjustment.from_state"),
        ("INVALID_VALUE", "changes[4].adjustment.to_state"),
        ("INVALID_VALUE", "changes[5].adjustment.quantity"),
        ("INVALID_VALUE", "changes[6].physical_count.state"),
    }
    assert await square.store("inventory") == []  # the good first change was not applied


async def test_the_description_refuses_unknown_fields_and_a_missing_key(square: Square) -> None:
    [variation] = await _variations(square, 1)
    change = _adjust(variation, 1)
    change["adjustment"]["colour"] = "red"
    response = await _post(square, "/v2/inventory/changes/batch-create",
                           {"idempotency_key": "x", "changes": [change]})
    assert response.status_code == 400
    assert response.json()["errors"][0]["field"] == "changes[0].adjustment.colour"
    response = await _post(square, "/v2/inventory/changes/batch-create",
                           {"changes": [_adjust(variation, 1)]})
    assert response.status_code == 400
    assert response.json()["errors"][0]["code"] == "MISSING_REQUIRED_PARAMETER"


async def test_an_idempotency_key_replays_and_refuses_another_body(square: Square) -> None:
    [variation] = await _variations(square, 1)
    body = {"idempotency_key": "once", "changes": [_adjust(variation, 5)]}
    first = await _post(square, "/v2/inventory/changes/batch-create", body)
    again = await _post(square, "/v2/inventory/changes/batch-create", body)
    assert first.json() == again.json()
    other = await _post(square, "/v2/inventory/changes/batch-create",
                        {"idempotency_key": "once", "changes": [_adjust(variation, 6)]})
    assert other.status_code == 400
    assert other.json()["errors"][0]["code"] == "IDEMPOTENCY_KEY_REUSED"
    [count] = await square.store("inventory")
    assert count["quantity"] == "5"


async def test_counts_page_newest_first_with_a_cursor(square: Square) -> None:
    variations = await _variations(square, 5)
    for i, variation in enumerate(variations):
        await _post(square, "/v2/inventory/changes/batch-create", {
            "idempotency_key": f"p{i}", "changes": [_adjust(variation, i + 1)]})
    seen: list[str] = []
    cursor = None
    while True:
        body: dict[str, Any] = {"location_ids": [LOCATION_ID], "limit": 2}
        if cursor:
            body["cursor"] = cursor
        page = (await _post(square, "/v2/inventory/counts/batch-retrieve", body)).json()
        seen += [c["catalog_object_id"] for c in page.get("counts", [])]
        cursor = page.get("cursor")
        if not cursor:
            break
    assert seen == list(reversed(variations))
    later = (await _post(square, "/v2/inventory/counts/batch-retrieve", {
        "updated_after": (await square.store("inventory"))[2]["calculated_at"]})).json()
    assert [c["catalog_object_id"] for c in later["counts"]] == variations[:2:-1]
    bad = await _post(square, "/v2/inventory/counts/batch-retrieve", {"cursor": "%%%"})
    assert bad.json()["errors"][0]["code"] == "INVALID_CURSOR"


async def test_history_lists_changes_oldest_first_with_their_source(square: Square) -> None:
    [variation] = await _variations(square, 1)
    await _post(square, "/v2/inventory/changes/batch-create", {
        "idempotency_key": "h", "changes": [_adjust(variation, 4, reference="syncd:4")]})
    assert square.emulator.pos_sale(variation, 1)
    page = (await _post(square, "/v2/inventory/changes/batch-retrieve", {
        "catalog_object_ids": [variation], "types": ["ADJUSTMENT"]})).json()
    [mine, register] = [c["adjustment"] for c in page["changes"]]
    assert (mine["reference_id"], mine["source"]["product"]) == ("syncd:4", "EXTERNAL_API")
    assert (register["to_state"], register["source"]["product"]) == ("SOLD", "SQUARE_POS")
    assert register["total_price_money"]["amount"] == 2500
    after = (await _post(square, "/v2/inventory/changes/batch-retrieve", {
        "updated_after": mine["created_at"]})).json()
    assert [c["adjustment"]["id"] for c in after["changes"]] == [register["id"]]


async def test_the_register_refuses_to_sell_what_is_not_in_stock(square: Square) -> None:
    [variation] = await _variations(square, 1)
    response = await square.control.post("/_emulator/square/pos-sale",
                                         json={"catalog_object_id": variation})
    assert response.status_code == 409
    await _post(square, "/v2/inventory/changes/batch-create", {
        "idempotency_key": "s", "changes": [_adjust(variation, 1)]})
    sold = await square.control.post("/_emulator/square/pos-sale",
                                     json={"catalog_object_id": variation})
    assert sold.json()["count"]["quantity"] == "0"
    past_zero = await square.control.post("/_emulator/square/pos-sale", json={
        "catalog_object_id": variation, "allow_negative": True})
    assert past_zero.json()["count"]["quantity"] == "-1"


async def test_count_changes_send_signed_webhooks_the_plugin_parses(square: Square) -> None:
    received: list[web.Request] = []
    bodies: list[bytes] = []

    async def hook(request: web.Request) -> web.Response:
        received.append(request)
        bodies.append(await request.read())
        return web.Response()

    app = web.Application()
    app.router.add_post("/hook", hook)
    async with EmulatorServer(app) as sink:
        url = sink.url + "/hook"
        await square.configure(webhook_url=url)
        [variation] = await _variations(square, 1)
        await _post(square, "/v2/inventory/changes/batch-create", {
            "idempotency_key": "w", "changes": [_adjust(variation, 3)]})
        assert square.emulator.pos_sale(variation, 1)
        for _ in range(500):  # deliveries go out in the background
            if sum(b"inventory.count.updated" in b for b in bodies) >= 2:
                break
            await asyncio.sleep(0.01)
    events = [json.loads(b) for b in bodies if b"inventory.count.updated" in b]
    assert [e["data"]["object"]["inventory_counts"][0]["quantity"] for e in events] == ["3", "2"]
    for request, body in zip(received, bodies, strict=True):
        assert request.headers[SIGNATURE_HEADER] == sign(body, url, "emulator-webhook-secret")
    parsed = PROVIDER.parse_webhook(WebhookRequest(headers={}, body=bodies[-1], url=url,
                                                   received_at=datetime.now(UTC)))
    [change] = parsed
    assert (change.entity, change.remote_id) == (Entity.INVENTORY, variation)
    assert change.payload["observed_quantity"] == 2
