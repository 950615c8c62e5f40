"""The Stripe client against the Stripe emulator: upsert, prices, adopt, faults, errors."""

from __future__ import annotations

import asyncio

import pytest

from daemon.provider import Credentials, Entity, ErrorKind, ProviderError
from plugins.stripe.client import product_id_for
from tests.integration.stripe.conftest import Stripe, outbound, with_payload


async def test_a_product_is_created_with_its_price_under_a_natural_id(stripe: Stripe) -> None:
    client = await stripe.client()
    [result] = await client.push(Entity.PRODUCT, [outbound(Entity.PRODUCT, 1)])
    assert result.ok, result.error
    assert result.action == "created"
    assert result.remote_id == product_id_for("v1", "product-1")
    [product] = await stripe.store("product")
    [price] = await stripe.store("price")
    assert product["default_price"] == price["id"] == result.remote_version
    assert (price["unit_amount"], price["currency"]) == (2501, "usd")
    assert product["metadata"]["event_id"] == "ev-1"
    assert product["unit_label"] == "ticket"


async def test_a_price_change_makes_a_new_default_price(stripe: Stripe) -> None:
    client = await stripe.client()
    [first] = await client.push(Entity.PRODUCT, [outbound(Entity.PRODUCT, 1)])
    changed = outbound(Entity.PRODUCT, 1, remote_id=first.remote_id, **{"event.price": 4000})
    [second] = await client.push(Entity.PRODUCT, [changed])
    assert second.ok, second.error
    assert second.action == "updated"
    prices = {p["id"]: p for p in await stripe.store("price")}
    assert len(prices) == 2
    [product] = await stripe.store("product")
    assert prices[product["default_price"]]["unit_amount"] == 4000
    assert prices[first.remote_version or ""]["active"] is False

    renamed = outbound(Entity.PRODUCT, 1, remote_id=first.remote_id,
                       **{"event.price": 4000, "event.name": "Renamed"})
    [third] = await client.push(Entity.PRODUCT, [renamed])
    assert third.ok
    assert len(await stripe.store("price")) == 2  # same price: no new one
    assert (await stripe.store("product"))[0]["name"] == "Renamed"


async def test_an_existing_product_with_the_natural_id_is_adopted(stripe: Stripe) -> None:
    client = await stripe.client()
    await client.push(Entity.PRODUCT, [outbound(Entity.PRODUCT, 1)])
    # the link was lost (new record version, no remote id): the create meets the same id
    again = outbound(Entity.PRODUCT, 1, **{"event.name": "Show one"})
    [result] = await client.push(Entity.PRODUCT, [again])
    assert result.ok, result.error
    assert result.action == "adopted"
    assert len(await stripe.store("product")) == 1


async def test_retry_after_reset_after_commit_leaves_one_product(stripe: Stripe) -> None:
    client = await stripe.client()
    record = outbound(Entity.PRODUCT, 1)
    await stripe.configure(reset_after_commit_rate=1.0)
    with pytest.raises(ProviderError) as failure:
        await client.push(Entity.PRODUCT, [record])
    assert failure.value.kind is ErrorKind.RETRYABLE
    await stripe.configure(reset_after_commit_rate=0.0)
    [again] = await client.push(Entity.PRODUCT, [record])
    assert again.ok, again.error
    assert len(await stripe.store("product")) == 1
    assert len(await stripe.store("price")) == 1


async def test_customers_are_created_updated_and_adopted_by_exact_email(stripe: Stripe) -> None:
    client = await stripe.client()
    [made] = await client.push(Entity.CUSTOMER, [outbound(Entity.CUSTOMER, 1)])
    assert made.action == "created"
    [customer] = await stripe.store("customer")
    assert customer["email"] == "buyer1@example.com"
    assert customer["metadata"] == {"customer_id": "cu-1", "venue_id": "v1",
                                    "marketing_opt_in": "True", "syncd_local_id": "customer-1"}

    linked = outbound(Entity.CUSTOMER, 1, remote_id=made.remote_id,
                      **{"customer.full_name": "Grace"})
    [updated] = await client.push(Entity.CUSTOMER, [linked])
    assert updated.action == "updated"

    [adopted] = await client.push(Entity.CUSTOMER, [outbound(Entity.CUSTOMER, 1)])
    assert adopted.action == "adopted"
    assert adopted.remote_id == made.remote_id
    assert len(await stripe.store("customer")) == 1


async def test_customer_retry_after_reset_after_commit_leaves_one(stripe: Stripe) -> None:
    client = await stripe.client()
    record = outbound(Entity.CUSTOMER, 1)
    await stripe.configure(reset_after_commit_rate=1.0)
    with pytest.raises(ProviderError):
        await client.push(Entity.CUSTOMER, [record])
    await stripe.configure(reset_after_commit_rate=0.0)
    [again] = await client.push(Entity.CUSTOMER, [record])
    assert again.ok
    assert len(await stripe.store("customer")) == 1


async def test_a_rejected_record_fails_alone(stripe: Stripe) -> None:
    client = await stripe.client()
    good = outbound(Entity.PRODUCT, 1)
    bad = outbound(Entity.PRODUCT, 2)
    bad = with_payload(bad, {**bad.payload, "unit_label": "far too long a label"})
    results = await client.push(Entity.PRODUCT, [good, bad])
    assert [r.ok for r in results] == [True, False]
    assert results[1].error_kind is ErrorKind.PERMANENT
    assert "unit_label" in (results[1].error or "")
    customers = await client.push(Entity.CUSTOMER, [
        outbound(Entity.CUSTOMER, 3, **{"customer.email": "nobody"})])
    assert not customers[0].ok


async def test_records_of_one_push_run_concurrently_within_the_limit(stripe: Stripe) -> None:
    client = await stripe.client()
    results = await client.push(Entity.CUSTOMER, [outbound(Entity.CUSTOMER, i)
                                                  for i in range(30)])
    assert all(r.ok for r in results)
    assert len(await stripe.store("customer")) == 30


async def test_429_is_retried_until_it_passes(stripe: Stripe) -> None:
    await stripe.configure(rate_limit_scale=0.04)  # 1 request/s
    client = await stripe.client()
    results = await asyncio.gather(*(client.push(Entity.CUSTOMER, [outbound(Entity.CUSTOMER, i)])
                                     for i in range(2)))
    assert all(r.ok for [r] in results)
    log = await stripe.requests()
    assert 429 in {r["status"] for r in log}
    assert len(await stripe.store("customer")) == 2


async def test_rate_limit_answers_like_stripe(stripe: Stripe) -> None:
    await stripe.configure(rate_limit_scale=0.04)
    creds = await stripe.credentials()
    headers = {"Authorization": f"Bearer {creds.api_key}"}
    responses = [await stripe.http.get(stripe.server.url + "/v1/customers", headers=headers)
                 for _ in range(3)]
    limited = next(r for r in responses if r.status_code == 429)
    assert limited.headers["Stripe-Should-Retry"] == "true"
    assert limited.json()["error"]["code"] == "rate_limit"


async def test_a_bad_key_is_an_auth_error(stripe: Stripe) -> None:
    client = await stripe.client(Credentials(api_key="sk_test_wrong"))
    with pytest.raises(ProviderError) as failure:
        await client.push(Entity.CUSTOMER, [outbound(Entity.CUSTOMER, 1)])
    assert failure.value.kind is ErrorKind.AUTH
    assert "sk_test_wrong" not in str(failure.value)
    assert not (await client.test_connection()).ok


async def test_idempotency_mismatch_is_stripes_error(stripe: Stripe) -> None:
    creds = await stripe.credentials()
    headers = {"Authorization": f"Bearer {creds.api_key}", "Idempotency-Key": "k1"}
    url = stripe.server.url + "/v1/customers"
    first = await stripe.http.post(url, data={"email": "a@b.co"}, headers=headers)
    replay = await stripe.http.post(url, data={"email": "a@b.co"}, headers=headers)
    assert replay.json() == first.json()
    assert replay.headers["Idempotent-Replayed"] == "true"
    other = await stripe.http.post(url, data={"email": "c@d.co"}, headers=headers)
    assert other.status_code == 400
    assert other.json()["error"]["type"] == "idempotency_error"


async def test_connect_account_header_and_pull_pagination(stripe: Stripe) -> None:
    client = await stripe.client(options={"account": "acct_1EmulatorConnected"})
    status = await client.test_connection()
    assert status.account_id == "acct_1EmulatorConnected"
    await client.push(Entity.CUSTOMER, [outbound(Entity.CUSTOMER, i) for i in range(101)])
    before = len(await stripe.requests())
    pulled = [c async for c in client.pull(Entity.CUSTOMER, None)]
    assert len({c.remote_id for c in pulled}) == 101
    pages = [r for r in (await stripe.requests())[before:] if r["path"] == "/v1/customers"]
    assert len(pages) == 2
    assert {r["account"] for r in pages} == {"acct_1EmulatorConnected"}


async def test_one_log_line_per_push_without_secrets(stripe: Stripe) -> None:
    from structlog.testing import capture_logs

    creds = await stripe.credentials()
    client = await stripe.client(creds)
    with capture_logs() as logs:
        await client.push(Entity.PRODUCT, [outbound(Entity.PRODUCT, 1)])
    [line] = [e for e in logs if e["event"] == "stripe.pushed"]
    assert (line["records"], line["failed"], line["api_calls"]) == (1, 0, 1)
    assert creds.api_key
    assert creds.api_key not in repr(logs)


async def test_a_sale_is_an_invoice_paid_out_of_band(stripe: Stripe) -> None:
    client = await stripe.client()
    await client.push(Entity.CUSTOMER, [outbound(Entity.CUSTOMER, 1)])
    [result] = await client.push(Entity.TRANSACTION, [outbound(Entity.TRANSACTION, 1)])
    assert result.ok, result.error
    [invoice] = await stripe.store("transaction")
    assert invoice["id"] == result.remote_id
    assert (invoice["status"], invoice["paid_out_of_band"]) == ("paid", True)
    assert (invoice["amount_paid"], invoice["currency"]) == (5000, "usd")
    assert invoice["metadata"]["order_id"] == "or-1"
    assert invoice["lines"]["data"][0]["description"] == "Show 1"
    [customer] = await stripe.store("customer")  # the buyer was adopted, not duplicated
    assert invoice["customer"] == customer["id"]

    [again] = await client.push(Entity.TRANSACTION, [
        outbound(Entity.TRANSACTION, 1, remote_id=result.remote_id, **{"order.amount": 1})])
    assert not again.ok
    assert again.error_kind is ErrorKind.PERMANENT


async def test_sale_retry_after_reset_after_commit_leaves_one_paid_invoice(
        stripe: Stripe) -> None:
    client = await stripe.client()
    record = outbound(Entity.TRANSACTION, 2)
    await stripe.configure(reset_after_commit_rate=1.0)
    with pytest.raises(ProviderError):
        await client.push(Entity.TRANSACTION, [record])
    await stripe.configure(reset_after_commit_rate=0.0)
    [again] = await client.push(Entity.TRANSACTION, [record])
    assert again.ok, again.error
    [invoice] = await stripe.store("transaction")
    assert invoice["status"] == "paid"
    assert len(invoice["lines"]["data"]) == 1
    assert len(await stripe.store("customer")) == 1


async def test_a_sale_in_a_bad_currency_fails_alone(stripe: Stripe) -> None:
    client = await stripe.client()
    [bad] = await client.push(Entity.TRANSACTION, [
        outbound(Entity.TRANSACTION, 1, **{"order.currency": "dollars"})])
    assert not bad.ok
    assert bad.error_kind is ErrorKind.PERMANENT
