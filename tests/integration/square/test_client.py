"""The Square client against the Square emulator: upsert, adopt, batch, faults, errors."""

from __future__ import annotations

import asyncio

import pytest

from daemon.provider import Credentials, Entity, ErrorKind, ProviderError
from tests.integration.square.conftest import Square, outbound, with_payload


async def test_products_are_created_then_updated_when_linked(square: Square) -> None:
    client = await square.client()
    [created] = await client.push(Entity.PRODUCT, [outbound(Entity.PRODUCT, 1)])
    assert created.ok, created.error
    assert created.action == "created"
    [item] = await square.store("product")
    assert item["id"] == created.remote_id
    assert item["item_data"]["name"] == "Show 1"
    variation = item["item_data"]["variations"][0]
    assert variation["item_variation_data"]["price_money"] == {"amount": 2501, "currency": "USD"}

    linked = outbound(Entity.PRODUCT, 1, remote_id=created.remote_id, **{"event.price": 3000})
    [updated] = await client.push(Entity.PRODUCT, [linked])
    assert updated.ok, updated.error
    assert updated.action == "updated"
    [item] = await square.store("product")
    assert len(item["item_data"]["variations"]) == 1
    assert item["item_data"]["variations"][0]["id"] == variation["id"]
    assert item["item_data"]["variations"][0]["item_variation_data"]["price_money"][
        "amount"] == 3000


async def test_descriptions_go_as_description_html_not_the_deprecated_field(
        square: Square) -> None:
    client = await square.client()
    record = outbound(Entity.PRODUCT, 1, **{"event.description": "Doors at 7 <sharp> & late\nbar"})
    [created] = await client.push(Entity.PRODUCT, [record])
    assert created.ok, created.error
    [item] = await square.store("product")
    assert "description" not in item["item_data"]  # deprecated since 2022-07-20
    assert item["item_data"]["description_html"] == (
        "<p>Doors at 7 &lt;sharp&gt; &amp; late<br>bar</p>")


async def test_a_full_product_push_goes_in_one_request(square: Square) -> None:
    client = await square.client()
    size = client_batch = 5000
    records = [outbound(Entity.PRODUCT, i) for i in range(size)]
    results = await client.push(Entity.PRODUCT, records)
    assert all(r.ok for r in results)
    assert len({r.remote_id for r in results}) == client_batch
    upserts = [r for r in await square.requests() if r["path"] == "/v2/catalog/batch-upsert"]
    assert len(upserts) == 1
    assert upserts[0]["batch_size"] == 5000  # items, each with its variation: 10,000 objects


async def test_oversize_batches_are_rejected_as_square_does(square: Square) -> None:
    creds = await square.credentials()
    headers = {"Authorization": f"Bearer {creds.access_token}"}
    item = {"type": "ITEM", "id": "#x", "item_data": {"name": "x"}}
    too_big_batch = {"idempotency_key": "k1",
                     "batches": [{"objects": [dict(item, id=f"#x{i}") for i in range(1001)]}]}
    response = await square.http.post(square.server.url + "/v2/catalog/batch-upsert",
                                      json=too_big_batch, headers=headers)
    assert response.status_code == 400
    assert response.json()["errors"][0]["code"] == "ARRAY_LENGTH_TOO_LONG"
    too_many = {"idempotency_key": "k2", "batches": [
        {"objects": [dict(item, id=f"#b{b}o{i}") for i in range(1000)]} for b in range(11)]}
    response = await square.http.post(square.server.url + "/v2/catalog/batch-upsert",
                                      json=too_many, headers=headers)
    assert response.status_code == 400
    customers = {"customers": {f"k{i}": {"email_address": f"a{i}@b.co"} for i in range(101)}}
    response = await square.http.post(square.server.url + "/v2/customers/bulk-create",
                                      json=customers, headers=headers)
    assert response.status_code == 400
    assert await square.store("product") == []


async def test_a_rejected_product_fails_alone(square: Square) -> None:
    client = await square.client()
    bad = outbound(Entity.PRODUCT, 2)
    bad = with_payload(bad, {**bad.payload, "name": "x" * 600})
    results = await client.push(Entity.PRODUCT, [outbound(Entity.PRODUCT, 1), bad,
                                                 outbound(Entity.PRODUCT, 3)])
    assert [r.ok for r in results] == [True, False, True]
    assert results[1].error_kind is ErrorKind.PERMANENT
    assert "512" in (results[1].error or "")
    assert len(await square.store("product")) == 2


async def test_a_product_square_rejects_fails_alone(square: Square) -> None:
    client = await square.client()
    ghost = outbound(Entity.PRODUCT, 2, remote_id="NOSUCHITEM")
    results = await client.push(Entity.PRODUCT, [outbound(Entity.PRODUCT, 1), ghost])
    assert results[0].ok
    # a link to an item deleted in Square: the product is created again, not lost
    assert results[1].ok
    assert results[1].action == "created"


async def test_retry_after_reset_after_commit_leaves_one_item(square: Square) -> None:
    client = await square.client()
    record = outbound(Entity.PRODUCT, 1)
    await square.configure(reset_after_commit_rate=1.0)
    with pytest.raises(ProviderError) as failure:
        await client.push(Entity.PRODUCT, [record])
    assert failure.value.kind is ErrorKind.RETRYABLE
    await square.configure(reset_after_commit_rate=0.0)
    [again] = await client.push(Entity.PRODUCT, [record])
    assert again.ok
    assert len(await square.store("product")) == 1


async def test_concurrent_catalog_writes_are_serialised(square: Square) -> None:
    first, second = await square.client(), await square.client()
    results = await asyncio.gather(
        first.push(Entity.PRODUCT, [outbound(Entity.PRODUCT, i) for i in range(20)]),
        second.push(Entity.PRODUCT, [outbound(Entity.PRODUCT, i) for i in range(20, 40)]))
    assert all(r.ok for batch in results for r in batch)
    assert 429 not in {r["status"] for r in await square.requests()}


async def test_customers_are_bulk_created_and_linked_ones_updated(square: Square) -> None:
    client = await square.client()
    results = await client.push(Entity.CUSTOMER, [outbound(Entity.CUSTOMER, i)
                                                  for i in range(100)])
    assert all(r.ok and r.action == "created" for r in results)
    stored = await square.store("customer")
    assert len(stored) == 100
    assert {c["email_address"] for c in stored} == {f"buyer{i}@example.com" for i in range(100)}
    creates = [r for r in await square.requests() if r["path"] == "/v2/customers/bulk-create"]
    assert [r["batch_size"] for r in creates] == [100]

    linked = outbound(Entity.CUSTOMER, 5, remote_id=results[5].remote_id,
                      **{"customer.first_name": "Grace"})
    [updated] = await client.push(Entity.CUSTOMER, [linked])
    assert updated.action == "updated"
    assert len(await square.store("customer")) == 100
    [grace] = [c for c in await square.store("customer") if c["id"] == results[5].remote_id]
    assert grace["given_name"] == "Grace"


async def test_the_client_splits_customers_into_bulk_creates_of_100(square: Square) -> None:
    # The client itself, called with more than Square's 100 entries per bulk-create (the
    # engine usually splits first): the emulator refuses a 101-entry call on its own,
    # documented limit.
    client = await square.client()
    results = await client.push(Entity.CUSTOMER, [outbound(Entity.CUSTOMER, i)
                                                  for i in range(250)])
    assert len(results) == 250
    assert all(r.ok and r.action == "created" for r in results)
    assert [r.local_id for r in results] == [f"customer-{i}" for i in range(250)]
    creates = [r for r in await square.requests() if r["path"] == "/v2/customers/bulk-create"]
    assert [(r["status"], r["batch_size"]) for r in creates] == [(200, 100), (200, 100),
                                                                  (200, 50)]
    assert len(await square.store("customer")) == 250


async def test_an_existing_customer_is_adopted_by_email(square: Square) -> None:
    creds = await square.credentials()
    made = await square.http.post(square.server.url + "/v2/customers", json={
        "email_address": "BUYER7@example.com", "given_name": "Old"},
        headers={"Authorization": f"Bearer {creds.access_token}"})
    existing = made.json()["customer"]["id"]
    client = await square.client()
    [result] = await client.push(Entity.CUSTOMER, [outbound(Entity.CUSTOMER, 7)])
    assert result.ok
    assert result.action == "adopted"
    assert result.remote_id == existing
    [only] = await square.store("customer")
    assert only["given_name"] == "Ada"
    assert only["reference_id"] == "cu-7"


async def test_many_unlinked_customers_are_adopted_from_one_listing(square: Square) -> None:
    creds = await square.credentials()
    headers = {"Authorization": f"Bearer {creds.access_token}"}
    by_ref = await square.http.post(square.server.url + "/v2/customers", headers=headers,
                                    json={"reference_id": "cu-3", "given_name": "Ref"})
    by_mail = await square.http.post(square.server.url + "/v2/customers", headers=headers,
                                     json={"email_address": "buyer9@example.com"})
    client = await square.client()
    results = await client.push(Entity.CUSTOMER, [outbound(Entity.CUSTOMER, i)
                                                  for i in range(40)])
    assert results[3].action == "adopted"
    assert results[3].remote_id == by_ref.json()["customer"]["id"]
    assert results[9].action == "adopted"
    assert results[9].remote_id == by_mail.json()["customer"]["id"]
    assert len(await square.store("customer")) == 40
    searches = [r for r in await square.requests() if r["path"] == "/v2/customers/search"]
    assert searches == []


async def test_a_rejected_customer_fails_alone(square: Square) -> None:
    client = await square.client()
    bad = outbound(Entity.CUSTOMER, 2, **{"customer.email": "not-an-email"})
    results = await client.push(Entity.CUSTOMER, [outbound(Entity.CUSTOMER, 1), bad])
    assert [r.ok for r in results] == [True, False]
    assert results[1].error_kind is ErrorKind.PERMANENT


async def test_customer_retry_after_reset_after_commit_leaves_one(square: Square) -> None:
    client = await square.client()
    record = outbound(Entity.CUSTOMER, 1)
    await square.configure(reset_after_commit_rate=1.0)
    with pytest.raises(ProviderError):
        await client.push(Entity.CUSTOMER, [record])
    await square.configure(reset_after_commit_rate=0.0)
    [again] = await client.push(Entity.CUSTOMER, [record])
    assert again.ok
    assert len(await square.store("customer")) == 1


async def test_orders_are_created_and_paid_externally(square: Square) -> None:
    client = await square.client()
    await client.push(Entity.CUSTOMER, [outbound(Entity.CUSTOMER, 1)])
    [result] = await client.push(Entity.TRANSACTION, [outbound(Entity.TRANSACTION, 1)])
    assert result.ok, result.error
    [order] = await square.store("transaction")
    assert order["id"] == result.remote_id
    assert order["state"] == "COMPLETED"
    assert order["reference_id"] == "or-1"
    assert order["line_items"][0]["quantity"] == "2"
    assert order["line_items"][0]["base_price_money"] == {"amount": 2500, "currency": "USD"}
    assert order["customer_id"] == (await square.store("customer"))[0]["id"]
    [payment] = await square.store("payment")
    assert payment["source_type"] == "EXTERNAL"
    assert payment["amount_money"] == {"amount": 5000, "currency": "USD"}


async def test_order_retry_after_reset_after_commit_pays_once(square: Square) -> None:
    client = await square.client()
    record = outbound(Entity.TRANSACTION, 1)
    await square.configure(reset_after_commit_rate=1.0)
    with pytest.raises(ProviderError):
        await client.push(Entity.TRANSACTION, [record])
    await square.configure(reset_after_commit_rate=0.0)
    [again] = await client.push(Entity.TRANSACTION, [record])
    assert again.ok, again.error
    assert len(await square.store("transaction")) == 1
    assert len(await square.store("payment")) == 1


async def test_an_order_in_the_wrong_currency_fails_alone(square: Square) -> None:
    client = await square.client()
    [bad] = await client.push(Entity.TRANSACTION, [
        outbound(Entity.TRANSACTION, 1, **{"order.currency": "eur"})])
    assert not bad.ok
    assert bad.error_kind is ErrorKind.PERMANENT
    assert "currency" in (bad.error or "")
    [good] = await client.push(Entity.TRANSACTION, [outbound(Entity.TRANSACTION, 2)])
    assert good.ok


async def test_429_is_retried_until_it_passes(square: Square) -> None:
    await square.configure(rate_limit_scale=0.05)  # 1 request/s, burst 2
    client = await square.client()
    results = [await client.push(Entity.TRANSACTION, [outbound(Entity.TRANSACTION, i)])
               for i in range(2)]
    assert all(r.ok for [r] in results)
    log = await square.requests()
    limited = [r for r in log if r["status"] == 429]
    assert limited
    assert len(await square.store("transaction")) == 2


async def test_a_bad_token_is_an_auth_error(square: Square) -> None:
    client = await square.client(Credentials(access_token="EAAAnot-a-token"))
    with pytest.raises(ProviderError) as failure:
        await client.push(Entity.CUSTOMER, [outbound(Entity.CUSTOMER, 1)])
    assert failure.value.kind is ErrorKind.AUTH
    assert "EAAAnot-a-token" not in str(failure.value)
    status = await client.test_connection()
    assert not status.ok


async def test_connection_and_pull_with_pagination(square: Square) -> None:
    client = await square.client()
    status = await client.test_connection()
    assert status.ok
    assert status.account_id == "MLEMULATOR0001"
    await client.push(Entity.CUSTOMER, [outbound(Entity.CUSTOMER, i) for i in range(100)])
    await client.push(Entity.CUSTOMER, [outbound(Entity.CUSTOMER, i) for i in range(100, 150)])
    before = len(await square.requests())
    pulled = [c async for c in client.pull(Entity.CUSTOMER, None)]
    assert len({c.remote_id for c in pulled}) == 150
    lists = [r for r in (await square.requests())[before:] if r["path"] == "/v2/customers"]
    assert len(lists) == 2


async def test_one_log_line_per_push_without_secrets(square: Square) -> None:
    from structlog.testing import capture_logs

    creds = await square.credentials()
    client = await square.client(creds)
    with capture_logs() as logs:
        await client.push(Entity.CUSTOMER, [outbound(Entity.CUSTOMER, 1)])
    [line] = [e for e in logs if e["event"] == "square.pushed"]
    assert line["records"] == 1
    assert line["failed"] == 0
    assert line["api_calls"] >= 1
    assert creds.access_token
    assert creds.access_token not in repr(logs)
