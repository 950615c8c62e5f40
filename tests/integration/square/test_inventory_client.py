"""The Square client's inventory against the emulator: chunks, adjustments, retries, pulls."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from daemon.inventory import Allocation
from daemon.provider import (
    ClientContext,
    EmulatorSettings,
    Entity,
    OutboundRecord,
    RecordResult,
    WebhookRequest,
)
from plugins.square.client import SquareClient
from plugins.square.emulator import SquareEmulator
from plugins.square.webhooks import parse
from tests.integration.emulated import emulated, record_for
from tests.integration.square.conftest import Square, outbound


class Links:
    """What the engine's entity_links would answer: product and inventory links by id."""

    def __init__(self) -> None:
        self.by_entity: dict[Entity, dict[str, str]] = {}

    def add(self, entity: Entity, local_id: str, remote_id: str) -> None:
        self.by_entity.setdefault(entity, {})[remote_id] = local_id

    async def __call__(self, entity: Entity, remote_ids: Sequence[str]) -> Mapping[str, str]:
        known = self.by_entity.get(entity, {})
        return {r: known[r] for r in remote_ids if r in known}


async def _client(square: Square, links: Links) -> SquareClient:
    return SquareClient(ClientContext(
        venue_id="v1", credentials=await square.credentials(), options={}, http=square.http,
        base_url=square.server.url, environment="sandbox", linked=links))


async def _events(square: Square, client: SquareClient, links: Links, count: int, *,
                  name: str = "Show") -> None:
    """``count`` events pushed as products (local ids event-0...), their links known."""
    records = [dataclasses.replace(outbound(Entity.PRODUCT, i, **{"event.name": f"{name} {i}"}),
                                   local_id=f"event-{i}") for i in range(count)]
    for result in await client.push(Entity.PRODUCT, records):
        assert result.ok, result.error
        links.add(Entity.PRODUCT, result.local_id, str(result.remote_id))


def stock(i: int, remaining: int, pos_sold: int = 0, *,
          after: RecordResult | None = None) -> OutboundRecord:
    """Event i's inventory record; ``after``: the result of its last push (its link)."""
    return dataclasses.replace(
        record_for(Entity.INVENTORY, f"event-{i}", {"quantity": remaining, "pos_sold": pos_sold},
                   key_id=f"{i}-{remaining}-{pos_sold}"),
        remote_id=after.remote_id if after else None,
        remote_version=after.remote_version if after else None)


def _counts(square: Square) -> dict[str, int]:
    return {c["catalog_object_id"]: int(c["quantity"])
            for c in square.emulator.collection("inventory").values()}


def _writes(square: Square) -> list[dict[str, Any]]:
    return [{"batch_size": r.batch_size, "status": r.status, "fault": r.fault}
            for r in square.emulator.requests
            if r.path == "/v2/inventory/changes/batch-create"]


async def test_counts_go_in_requests_of_at_most_100_changes(square: Square) -> None:
    links = Links()
    client = await _client(square, links)
    await _events(square, client, links, 250)
    results = await client.push(Entity.INVENTORY, [stock(i, 10 + i % 7) for i in range(250)])
    assert all(r.ok and r.action == "created" for r in results), results[0].error
    assert [w["batch_size"] for w in _writes(square)] == [100, 100, 50]
    counts = _counts(square)
    assert [counts[str(r.remote_id)] for r in results] == [10 + i % 7 for i in range(250)]
    # Linked and unchanged: nothing is written again.
    again = await client.push(Entity.INVENTORY, [stock(i, 10 + i % 7, after=r)
                                                 for i, r in enumerate(results)])
    assert {r.action for r in again} == {"unchanged"}
    assert len(_writes(square)) == 3


async def test_a_register_sale_between_pushes_is_not_overwritten(square: Square) -> None:
    links = Links()
    client = await _client(square, links)
    await _events(square, client, links, 1)
    [first] = await client.push(Entity.INVENTORY, [stock(0, 10)])
    variation = str(first.remote_id)
    assert square.emulator.pos_sale(variation, 2)  # the box office sells two
    # Three sold online meanwhile: the platform has 7 left and knows nothing of the two.
    [second] = await client.push(Entity.INVENTORY, [stock(0, 7, after=first)])
    assert second.ok
    assert second.action == "updated"
    assert _counts(square)[variation] == 5  # 10 - 3 online - 2 at the register
    state = Allocation.parse(second.remote_version)
    assert state is not None
    assert state.allocation == 7
    # The platform records the two register sales: its remaining drops, the count stays.
    [third] = await client.push(Entity.INVENTORY, [stock(0, 5, 2, after=second)])
    assert third.action == "unchanged"
    assert _counts(square)[variation] == 5


async def test_syncd_never_takes_a_count_below_zero(square: Square) -> None:
    links = Links()
    client = await _client(square, links)
    await _events(square, client, links, 1)
    [pushed] = await client.push(Entity.INVENTORY, [stock(0, 4)])  # 4 seats
    variation = str(pushed.remote_id)
    assert square.emulator.pos_sale(variation, 3)  # 1 left at Square
    # Both channels sold the same seats: the platform sold all 4 online meanwhile.
    [pushed] = await client.push(Entity.INVENTORY, [stock(0, 0, after=pushed)])
    assert (pushed.action, _counts(square)[variation]) == ("updated", 0)
    state = Allocation.parse(pushed.remote_version)
    assert state is not None
    assert state.allocation == 3
    # One refund online, then the platform learns of the register sales: still oversold.
    for remaining, pos in ((1, 0), (-2, 3)):
        [pushed] = await client.push(Entity.INVENTORY, [stock(0, remaining, pos, after=pushed)])
        assert (pushed.action, _counts(square)[variation]) == ("unchanged", 0)
    # Three more refunds online: one seat is really free again.
    [pushed] = await client.push(Entity.INVENTORY, [stock(0, 1, 3, after=pushed)])
    assert (pushed.action, _counts(square)[variation]) == ("updated", 1)


class DroppingSquare(SquareEmulator):
    """Square that commits the next ``drops`` inventory writes and loses their answers."""

    drops = 0

    async def inventory_batch_change(self, request: web.Request) -> web.Response:
        response = await super().inventory_batch_change(request)
        if self.drops:
            self.drops -= 1
            self._drop(request)
            raise ConnectionResetError
        return response


async def test_a_retry_after_a_lost_answer_does_not_adjust_twice() -> None:
    async with emulated(DroppingSquare(EmulatorSettings(seed=7)), SquareClient) as square:
        links = Links()
        client = await _client(square, links)
        await _events(square, client, links, 3)
        created = await client.push(Entity.INVENTORY, [stock(i, 20) for i in range(3)])
        square.emulator.drops = 1
        # The write commits and its answer is lost; the retry (same body, same key) replays.
        results = await client.push(Entity.INVENTORY, [stock(i, 15, after=r)
                                                       for i, r in enumerate(created)])
        assert all(r.ok for r in results), [r.error for r in results]
        writes = [r for r in square.emulator.requests
                  if r.path == "/v2/inventory/changes/batch-create"]
        assert len(writes) == 3
        assert [w.status for w in writes[1:]] == [0, 200]  # lost, then replayed
        assert set(_counts(square).values()) == {15}
        assert len(square.emulator.collection("inventory_change")) == 6  # 3 + 3, not 3 + 6


async def test_a_change_whose_answer_was_never_stored_is_found_not_repeated(
        square: Square) -> None:
    links = Links()
    client = await _client(square, links)
    await _events(square, client, links, 1)
    [first] = await client.push(Entity.INVENTORY, [stock(0, 20)])
    # Pushed (20 -> 15), then syncd crashed before storing the answer: the link still says
    # 20. Meanwhile two more sold online (13) and one at the register.
    [lost] = await client.push(Entity.INVENTORY, [stock(0, 15, after=first)])
    assert lost.ok
    assert square.emulator.pos_sale(str(first.remote_id), 1)
    fresh = await _client(square, links)
    [retried] = await fresh.push(Entity.INVENTORY, [stock(0, 13, after=first)])
    assert retried.ok, retried.error
    assert _counts(square)[str(first.remote_id)] == 12  # 13 online-sellable, 1 at the register
    state = Allocation.parse(retried.remote_version)
    assert state is not None
    assert state.allocation == 13


async def test_an_event_without_a_catalog_item_fails_alone(square: Square) -> None:
    links = Links()
    client = await _client(square, links)
    await _events(square, client, links, 1)
    results = await client.push(Entity.INVENTORY, [stock(0, 5), stock(7, 5),
                                                   dataclasses.replace(stock(0, 5),
                                                                       local_id="event-0x",
                                                                       payload={"quantity": "x",
                                                                                "pos_sold": 0})])
    assert [r.ok for r in results] == [True, False, False]
    assert "product must be synced" in str(results[1].error)
    assert "whole number" in str(results[2].error)


async def test_a_variation_made_anew_is_found_again(square: Square) -> None:
    links = Links()
    client = await _client(square, links)
    await _events(square, client, links, 1)
    [first] = await client.push(Entity.INVENTORY, [stock(0, 9)])
    # The item is deleted in Square and the product pushed again as a new item.
    square.emulator.collection("product").clear()
    links.by_entity.clear()
    await _events(square, client, links, 1, name="Show again")
    [again] = await (await _client(square, links)).push(Entity.INVENTORY,
                                                          [stock(0, 8, after=first)])
    assert again.ok, again.error
    assert again.remote_id != first.remote_id
    assert _counts(square)[str(again.remote_id)] == 8


async def test_pulled_counts_are_those_of_linked_variations_keyed_like_webhooks(
        square: Square) -> None:
    links = Links()
    client = await _client(square, links)
    await _events(square, client, links, 2)
    results = await client.push(Entity.INVENTORY, [stock(0, 6), stock(1, 4)])
    links.add(Entity.INVENTORY, "event-0", str(results[0].remote_id))  # only one is linked
    assert square.emulator.pos_sale(str(results[0].remote_id), 1)
    pulled = [c async for c in client.pull(Entity.INVENTORY, None)]
    [change] = pulled
    count = square.emulator.collection("inventory")[
        f"{change.payload['location_id']}|{results[0].remote_id}"]
    assert change.remote_id == results[0].remote_id
    assert change.payload["observed_quantity"] == 5
    assert change.dedupe_key == (f"inventory:{count['location_id']}:{results[0].remote_id}:"
                                 f"{count['calculated_at']}")
    body = square.emulator._inventory_event([count])
    [webhook] = parse(WebhookRequest(headers={}, body=body, url="",
                                     received_at=datetime.now(UTC)))
    assert webhook.dedupe_key == change.dedupe_key
