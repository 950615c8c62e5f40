"""The emulators refuse what the real services refuse, checked against the providers'
published API descriptions (Stripe, Square, Mailchimp) or the documented one QuickBooks
lacks, with each provider's own error shape."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings

from daemon.provider import EmulatorSettings
from daemon.testing.emulator import Emulator, EmulatorServer
from daemon.testing.kit._described import (
    check_refused,
    described_operations,
    invalid_request_strategy,
)
from daemon.testing.openapi import Description, InvalidRequest
from plugins.mailchimp.emulator import DEFAULT_LIST_ID, DEFAULT_STORE_ID, MailchimpEmulator
from plugins.quickbooks.emulator import DEFAULT_REALM, QuickBooksEmulator
from plugins.quickbooks.emulator import refuses as quickbooks_refusal
from plugins.square.emulator import SquareEmulator
from plugins.stripe.emulator import StripeEmulator


def _described(emulator: Emulator) -> Description:
    description = getattr(emulator, "description", None)
    if description is None:
        message = "the providers' API descriptions were not found (SYNCD_EMULATOR_SPECS)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    assert isinstance(description, Description)
    return description


@asynccontextmanager
async def _served(emulator: Emulator) -> AsyncIterator[httpx.AsyncClient]:
    _described(emulator)
    async with EmulatorServer(emulator) as server:
        token = next(v for k, v in emulator.default_credentials().items() if k != "account")
        async with httpx.AsyncClient(base_url=server.url, timeout=10.0, headers={
                "Authorization": f"Bearer {token}"}) as http:
            yield http


@pytest.fixture
async def stripe() -> AsyncIterator[httpx.AsyncClient]:
    async with _served(StripeEmulator(EmulatorSettings(enforce_rate_limits=False))) as http:
        yield http


@pytest.fixture
async def square() -> AsyncIterator[httpx.AsyncClient]:
    async with _served(SquareEmulator(EmulatorSettings(enforce_rate_limits=False))) as http:
        yield http


@pytest.fixture
async def quickbooks() -> AsyncIterator[httpx.AsyncClient]:
    async with _served(QuickBooksEmulator(EmulatorSettings(enforce_rate_limits=False))) as http:
        yield http


@pytest.fixture
async def mailchimp() -> AsyncIterator[httpx.AsyncClient]:
    async with _served(MailchimpEmulator(EmulatorSettings(enforce_rate_limits=False))) as http:
        yield http


def _stripe_error(response: httpx.Response, param: str | None) -> dict[str, Any]:
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert error.get("param") == param
    assert isinstance(error["message"], str)
    return dict(error)


def _square_fields(response: httpx.Response) -> dict[str, str]:
    assert response.status_code == 400, response.text
    errors = response.json()["errors"]
    assert errors
    for error in errors:
        assert error["category"] == "INVALID_REQUEST_ERROR"
        assert error["code"]
        assert error["detail"]
    return {e.get("field", ""): e["code"] for e in errors}


# --- Stripe: the requests issue 17 found accepted --------------------------------------------


@pytest.mark.parametrize(("method", "path", "data", "param", "code"), [
    ("POST", "/v1/products", {"name": "Show", "default_price_data[currency]": "usd",
                              "default_price_data[bogus]": "1"},
     "default_price_data[bogus]", "parameter_unknown"),
    ("GET", "/v1/customers?colour=red", None, "colour", "parameter_unknown"),
    ("POST", "/v1/invoices", {"customer": "cus_1", "auto_advance": "maybe"},
     "auto_advance", None),
    ("POST", "/v1/invoices", {"customer": "cus_1", "pending_invoice_items_behavior": "bogus"},
     "pending_invoice_items_behavior", None),
    ("POST", "/v1/products", {"name": "Show", "description": "x" * 40_001},
     "description", None),
    ("POST", "/v1/products", {"name": "Show", "expand[]": "x" * 5001}, "expand[0]", None),
    ("POST", "/v1/prices", {"product": "prod_1", "unit_amount": "12.5"},
     "unit_amount", "parameter_invalid_integer"),
    ("POST", "/v1/products", {"description": "no name"}, "name", "parameter_missing"),
])
async def test_stripe_refuses_what_its_description_refuses(
        stripe: httpx.AsyncClient, method: str, path: str, data: dict[str, str] | None,
        param: str, code: str | None) -> None:
    response = await stripe.request(method, path, data=data)
    error = _stripe_error(response, param)
    assert error.get("code") == code


@pytest.mark.parametrize(("method", "path", "data", "entry"), [
    ("POST", "/v1/products", {"name": "Show", "expand[]": "bogus"}, "bogus"),
    # a list expands inside its items: data.default_price, not default_price
    ("GET", "/v1/products?expand[]=default_price", None, "default_price"),
    # an object that holds no expandable field, and one that is not expandable at all
    ("POST", "/v1/invoices", {"customer": "cus_1", "expand[]": "automatic_tax"},
     "automatic_tax"),
    ("POST", "/v1/customers", {"email": "a@example.com", "expand[]": "email"}, "email"),
    ("GET", "/v1/prices?expand[]=data.product.bogus", None, "data.product.bogus"),
])
async def test_stripe_refuses_expansions_its_description_does_not_allow(
        stripe: httpx.AsyncClient, method: str, path: str, data: dict[str, str] | None,
        entry: str) -> None:
    response = await stripe.request(method, path, data=data)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert error["message"] == f"This property cannot be expanded ({entry})."


async def test_stripe_expands_what_its_description_allows(stripe: httpx.AsyncClient) -> None:
    product = await stripe.post("/v1/products", data={
        "name": "Show", "default_price_data[currency]": "usd",
        "default_price_data[unit_amount]": "1200", "expand[]": "default_price"})
    assert product.status_code == 200, product.text
    assert product.json()["default_price"]["unit_amount"] == 1200
    listed = await stripe.get("/v1/products", params={"expand[]": "data.default_price"})
    assert listed.status_code == 200, listed.text
    price = product.json()["default_price"]["id"]
    nested = await stripe.get(f"/v1/prices/{price}",
                              params={"expand[]": "product.default_price"})
    assert nested.status_code == 200, nested.text
    too_deep = await stripe.get("/v1/prices", params={
        "expand[]": "data.product.default_price.product.default_price"})
    assert too_deep.status_code == 400
    assert "more than 4 levels" in too_deep.json()["error"]["message"]


async def test_stripe_unknown_urls_are_404_in_its_shape(stripe: httpx.AsyncClient) -> None:
    response = await stripe.get("/v1/nothing_here")
    assert response.status_code == 404
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert "Unrecognized request URL (GET: /v1/nothing_here)" in error["message"]


async def test_stripe_refused_requests_change_nothing(stripe: httpx.AsyncClient) -> None:
    response = await stripe.post("/v1/customers", data={"email": "a@example.com",
                                                        "shoe_size": "9"},
                                 headers={"Idempotency-Key": "k1"})
    _stripe_error(response, "shoe_size")
    listed = await stripe.get("/v1/customers")
    assert listed.json()["data"] == []
    retried = await stripe.post("/v1/customers", data={"email": "a@example.com"},
                                headers={"Idempotency-Key": "k1"})
    assert retried.status_code == 200, retried.text


# --- Square ------------------------------------------------------------------------------


@pytest.mark.parametrize(("method", "path", "body", "field", "code"), [
    ("POST", "/v2/customers/search",
     {"query": {"filter": {"shoe_size": {"exact": "9"}}}}, "query.filter.shoe_size",
     "BAD_REQUEST"),
    ("POST", "/v2/customers/search", {"query": {"sort": {"field": "NAME"}}},
     "query.sort.field", "INVALID_ENUM_VALUE"),
    ("GET", "/v2/customers?sort_field=NAME", None, "sort_field", "INVALID_ENUM_VALUE"),
    ("GET", "/v2/customers?colour=red", None, "colour", "UNKNOWN_QUERY_PARAMETER"),
    ("POST", "/v2/customers/bulk-create",
     {"customers": {"k1": {"given_name": "Ada", "shoe_size": 9}}},
     "customers.k1.shoe_size", "BAD_REQUEST"),
    ("POST", "/v2/payments", {"source_id": "EXTERNAL", "idempotency_key": "k",
                              "amount_money": {"amount": 1, "currency": "USD"},
                              "bogus": True}, "bogus", "BAD_REQUEST"),
    ("POST", "/v2/orders", {"idempotency_key": "k", "order": {
        "location_id": "L1", "total_money": {"amount": 1, "currency": "USD"}}},
     "order.total_money", "INVALID_VALUE"),
    ("POST", "/v2/orders", {"idempotency_key": "k", "order": {
        "location_id": "L1", "ticket_name": "x" * 60}}, "order.ticket_name",
     "VALUE_TOO_LONG"),
    ("POST", "/v2/orders", {"idempotency_key": "k", "order": {}}, "order.location_id",
     "MISSING_REQUIRED_PARAMETER"),
    ("POST", "/v2/catalog/batch-upsert", {"idempotency_key": "k", "batches": [{"objects": [
        {"type": "ITEM", "id": "#a", "item_data": {"name": "Show", "variations": [
            {"type": "ITEM_VARIATION", "id": "#v", "item_variation_data": {
                "name": "GA", "pricing_type": "FOOO"}}]}}]}]},
     "batches[0].objects[0].item_data.variations[0].item_variation_data.pricing_type",
     "INVALID_ENUM_VALUE"),
    ("POST", "/v2/customers", {"given_name": 5}, "given_name", "EXPECTED_STRING"),
])
async def test_square_refuses_what_its_description_refuses(
        square: httpx.AsyncClient, method: str, path: str, body: Any, field: str,
        code: str) -> None:
    response = await square.request(method, path, json=body)
    assert _square_fields(response).get(field) == code


async def test_square_unknown_paths_are_404_in_its_shape(square: httpx.AsyncClient) -> None:
    response = await square.get("/v2/nothing-here")
    assert response.status_code == 404
    [error] = response.json()["errors"]
    assert (error["category"], error["code"]) == ("INVALID_REQUEST_ERROR", "NOT_FOUND")


async def test_square_unknown_catalog_fields_are_not_stored(square: httpx.AsyncClient) -> None:
    response = await square.post("/v2/catalog/batch-upsert", json={
        "idempotency_key": "k", "batches": [{"objects": [{
            "type": "ITEM", "id": "#a", "item_data": {"name": "Show", "colour": "red"}}]}]})
    assert "batches[0].objects[0].item_data.colour" in _square_fields(response)
    listed = await square.get("/v2/catalog/list")
    assert listed.json().get("objects", []) == []


async def test_relaxed_emulators_let_invalid_requests_through() -> None:
    emulator = SquareEmulator(EmulatorSettings(strict=False))
    async with _served(emulator) as http:
        response = await http.get("/v2/customers?sort_field=NAME")
        assert response.status_code == 200
        # strict is a setting like the others: PATCH /_emulator/settings turns it back on
        await http.patch("/_emulator/settings", json={"strict": True})
        response = await http.get("/v2/customers?sort_field=NAME")
        assert response.status_code == 400


# --- Mailchimp ---------------------------------------------------------------------------

_LIST = f"/3.0/lists/{DEFAULT_LIST_ID}"
_MEMBER = f"{_LIST}/members/0123456789abcdef0123456789abcdef"
_STORE = f"/3.0/ecommerce/stores/{DEFAULT_STORE_ID}"


def _mailchimp_fields(response: httpx.Response) -> dict[str, str]:
    assert response.status_code == 400, response.text
    assert response.headers["Content-Type"].startswith("application/problem+json")
    body = response.json()
    assert {"type", "title", "status", "detail", "instance"} <= set(body)
    assert (body["title"], body["status"]) == ("Invalid Resource", 400)
    return {e["field"]: e["message"] for e in body["errors"]}


@pytest.mark.parametrize(("method", "path", "body", "field", "says"), [
    ("PUT", _MEMBER, {"email_address": "a@example.com", "status_if_new": "subscribed",
                      "shoe_size": 9}, "shoe_size", "does not describe"),
    ("PUT", _MEMBER, {"email_address": "a@example.com", "status_if_new": "members"},
     "status_if_new", "enum"),
    ("PUT", _MEMBER, {"email_address": "a@example.com"}, "status_if_new", "Required"),
    ("PATCH", _MEMBER, {"vip": "yes"}, "vip", "boolean"),
    ("PUT", _MEMBER, {"email_address": "a@example.com", "status_if_new": "subscribed",
                      "location": {"latitude": 1, "altitude": 2}}, "location.altitude",
     "does not describe"),
    ("POST", _LIST, {"members": [{"email_address": "a@example.com", "status": "subscribed",
                                  "shoe_size": 9}]}, "members[0].shoe_size",
     "does not describe"),
    ("POST", _LIST, {"members": [{"email_address": "a@example.com", "status": "subscribed",
                                  "tags": [{"name": "x"}]}]}, "members[0].tags[0]", "string"),
    ("POST", _LIST, {"members": [{"email_address": "a@example.com", "status": "bogus"}]},
     "members[0].status", "enum"),
    ("POST", _LIST, {"update_existing": True}, "members", "Required"),
    ("GET", f"{_LIST}/members?colour=red", None, "colour", "query parameter"),
    ("GET", f"{_LIST}/members?count=lots", None, "count", "integer"),
    ("GET", f"{_LIST}/members?status=members", None, "status", "enum"),
    ("POST", f"{_STORE}/orders", {"id": "o1", "customer": {"id": "c1"}, "currency_code": "USD",
                                  "order_total": 10, "lines": [{
                                      "id": "l1", "product_id": "p1", "product_variant_id": "p1",
                                      "quantity": 1, "price": 10, "product_title": "Show"}]},
     "lines[0].product_title", "does not describe"),
    ("POST", f"{_STORE}/orders", {"id": "o1", "customer": {"id": "c1"}, "order_total": 10,
                                  "lines": []}, "currency_code", "Required"),
    ("POST", f"{_MEMBER}/tags", {"tags": [{"name": "vip", "status": "on"}]},
     "tags[0].status", "enum"),
])
async def test_mailchimp_refuses_what_its_description_refuses(
        mailchimp: httpx.AsyncClient, method: str, path: str, body: Any, field: str,
        says: str) -> None:
    response = await mailchimp.request(method, path, json=body)
    fields = _mailchimp_fields(response)
    assert says in fields.get(field, ""), fields


async def test_mailchimp_unknown_urls_are_404_in_its_shape(
        mailchimp: httpx.AsyncClient) -> None:
    response = await mailchimp.get("/3.0/nothing-here")
    assert response.status_code == 404
    body = response.json()
    assert (body["title"], body["status"]) == ("Resource Not Found", 404)


async def test_mailchimp_refused_requests_change_nothing(mailchimp: httpx.AsyncClient) -> None:
    response = await mailchimp.post(_LIST, json={"members": [
        {"email_address": "a@example.com", "status": "subscribed"},
        {"email_address": "b@example.com", "status": "subscribed", "shoe_size": 9}]})
    assert "members[1].shoe_size" in _mailchimp_fields(response)
    listed = await mailchimp.get(f"{_LIST}/members")
    assert listed.json()["members"] == []


async def test_mailchimp_takes_what_its_description_allows(
        mailchimp: httpx.AsyncClient) -> None:
    response = await mailchimp.put(_MEMBER.rsplit("/", 1)[0] + "/a%40example.com", json={
        "email_address": "a@example.com", "status_if_new": "subscribed",
        "merge_fields": {"FNAME": "Ada", "ANY_TAG": 3}, "vip": True},
        params={"skip_merge_validation": "true"})
    assert response.status_code == 200, response.text
    listed = await mailchimp.get(f"{_LIST}/members", params={
        "count": "1000", "fields": "members.email_address,total_items"})
    assert listed.status_code == 200, listed.text


# --- QuickBooks ---------------------------------------------------------------------------

_COMPANY = f"/v3/company/{DEFAULT_REALM}"
_Q = {"minorversion": "75"}
_SHOW = {"DetailType": "SalesItemLineDetail", "Amount": 10,
         "SalesItemLineDetail": {"ItemRef": {"value": "1"}}}


def _quickbooks_errors(response: httpx.Response) -> dict[str, str]:
    assert response.status_code == 400, response.text
    fault = response.json()["Fault"]
    assert fault["type"] == "ValidationFault"
    for error in fault["Error"]:
        assert all(error[k] for k in ("Message", "Detail", "code")), error
    return {e["element"]: e["code"] for e in fault["Error"]}


@pytest.mark.parametrize(("path", "body", "element", "code"), [
    ("/customer", {"DisplayName": "Ada", "ShoeSize": 9}, "ShoeSize", "2010"),
    ("/customer", {"DisplayName": "x" * 501}, "DisplayName", "2050"),
    ("/customer", {"DisplayName": "Ada", "PrimaryEmailAddr": {"Address": "a" * 101}},
     "PrimaryEmailAddr.Address", "2050"),
    ("/customer", {"DisplayName": "Ada", "GivenName": 7}, "GivenName", "2010"),
    ("/customer", {"DisplayName": "Ada", "PreferredDeliveryMethod": "Pigeon"},
     "PreferredDeliveryMethod", "2170"),
    ("/customer", {"DisplayName": "Ada", "MetaData": {"CreateTime": "2020-01-01"}},
     "MetaData", "2010"),
    ("/item", {"Name": "Show", "Type": "Ticket"}, "Type", "2170"),
    ("/item", {"Name": "x" * 101}, "Name", "2050"),
    ("/item", {"Name": "Shows:Friday"}, "Name", "2010"),
    ("/salesreceipt", {"Line": [{"Amount": 10}]}, "Line[0].DetailType", "2020"),
    ("/salesreceipt", {"Line": [_SHOW], "DocNumber": "x" * 22}, "DocNumber", "2050"),
    ("/salesreceipt", {"Line": [_SHOW], "TotalAmt": 10}, "TotalAmt", "2010"),
    ("/invoice", {"Line": [{**_SHOW, "DetailType": "TicketLine"}]}, "Line[0].DetailType",
     "2170"),
    ("/batch", {"BatchItemRequest": [{"bId": f"b{i}", "operation": "create",
                                      "Customer": {"DisplayName": f"C{i}"}}
                                     for i in range(31)]}, "BatchItemRequest", "1040"),
    ("/batch", {"BatchItemRequest": [{"bId": "b1", "operation": "upsert",
                                      "Customer": {"DisplayName": "C"}}]},
     "BatchItemRequest[0].operation", "2170"),
    ("/batch", {"BatchItemRequest": [{"bId": "b1", "Customer": {"ShoeSize": 9}}]},
     "BatchItemRequest[0].Customer.ShoeSize", "2010"),
    ("/batch", {"BatchItemRequest": [{"bId": "b" * 11, "Query": "select * from Item"}]},
     "BatchItemRequest[0].bId", "2050"),
])
async def test_quickbooks_refuses_what_its_documentation_refuses(
        quickbooks: httpx.AsyncClient, path: str, body: Any, element: str, code: str) -> None:
    response = await quickbooks.post(_COMPANY + path, params=_Q, json=body)
    assert _quickbooks_errors(response).get(element) == code


async def test_quickbooks_refuses_unknown_query_parameters(
        quickbooks: httpx.AsyncClient) -> None:
    response = await quickbooks.get(f"{_COMPANY}/item/1", params={**_Q, "colour": "red"})
    assert _quickbooks_errors(response) == {"colour": "2010"}
    response = await quickbooks.get(f"{_COMPANY}/item/1")
    assert _quickbooks_errors(response) == {"minorversion": "4002"}


async def test_quickbooks_batch_items_fail_alone_on_their_values(
        quickbooks: httpx.AsyncClient) -> None:
    response = await quickbooks.post(f"{_COMPANY}/batch", params=_Q, json={
        "BatchItemRequest": [
            {"bId": "ok", "operation": "create", "Customer": {"DisplayName": "Ada"}},
            {"bId": "long", "operation": "create", "Customer": {"DisplayName": "x" * 501}}]})
    assert response.status_code == 200, response.text
    ok, long = response.json()["BatchItemResponse"]
    assert ok["Customer"]["DisplayName"] == "Ada"
    [error] = long["Fault"]["Error"]
    assert (error["code"], error["element"]) == ("2050", "DisplayName")
    listed = await quickbooks.get(f"{_COMPANY}/query", params={
        **_Q, "query": "select * from Customer"})
    assert [c["DisplayName"] for c in listed.json()["QueryResponse"]["Customer"]] == ["Ada"]


async def test_quickbooks_takes_what_its_documentation_allows(
        quickbooks: httpx.AsyncClient) -> None:
    item = await quickbooks.post(f"{_COMPANY}/item", params=_Q, json={
        "Name": "Show", "Type": "Service", "UnitPrice": 10, "Sku": "ev-1",
        "Description": "Friday", "IncomeAccountRef": {"value": "79"}, "Taxable": False})
    assert item.status_code == 200, item.text
    sale = await quickbooks.post(f"{_COMPANY}/salesreceipt", params=_Q, json={
        "DocNumber": "o-1", "TxnDate": "2025-01-02", "PrivateNote": "GA",
        "BillEmail": {"Address": "a@example.com"},
        "Line": [{"DetailType": "SalesItemLineDetail", "Amount": 20, "Description": "Show",
                  "SalesItemLineDetail": {"ItemRef": {"value": item.json()["Item"]["Id"],
                                                      "name": "Show"}, "Qty": 2}}]})
    assert sale.status_code == 200, sale.text
    query = await quickbooks.post(f"{_COMPANY}/query", params=_Q,
                                  content=b"select * from Item",
                                  headers={"Content-Type": "application/text"})
    assert query.status_code == 200, query.text


# --- relaxed -----------------------------------------------------------------------------


@pytest.mark.parametrize(("emulator_type", "path", "body"), [
    (MailchimpEmulator, f"{_LIST}/members", {"email_address": "a@example.com",
                                             "status": "subscribed", "shoe_size": 9}),
    (QuickBooksEmulator, f"{_COMPANY}/customer?minorversion=75",
     {"DisplayName": "Ada", "ShoeSize": 9}),
], ids=["mailchimp", "quickbooks"])
async def test_strict_off_lets_the_new_validators_through(
        emulator_type: type[Emulator], path: str, body: Any) -> None:
    emulator = emulator_type(EmulatorSettings(strict=False, enforce_rate_limits=False))
    async with _served(emulator) as http:
        response = await http.post(path, json=body)
        assert response.status_code == 200, response.text
        await http.patch("/_emulator/settings", json={"strict": True})
        response = await http.post(path, json=body)
        assert response.status_code == 400


# --- generated from the descriptions -----------------------------------------------------


def _stripe_refusal(status: int, body: Any, invalid: InvalidRequest) -> bool:
    error = body.get("error") if isinstance(body, dict) else None
    head, *rest = [str(p) for p in invalid.field]
    param = head + "".join(f"[{p}]" for p in rest)
    return (status == 400 and isinstance(error, dict)
            and error.get("type") == "invalid_request_error" and error.get("param") == param)


def _square_field(invalid: InvalidRequest) -> str:
    out = ""
    for part in invalid.field:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _square_refusal(status: int, body: Any, invalid: InvalidRequest) -> bool:
    errors = body.get("errors") if isinstance(body, dict) else None
    return (status == 400 and isinstance(errors, list) and all(
        e.get("category") == "INVALID_REQUEST_ERROR" and e.get("code") and e.get("detail")
        for e in errors) and any(e.get("field") == _square_field(invalid) for e in errors))


@pytest.fixture(scope="module")
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    loop = asyncio.new_event_loop()
    yield loop
    loop.close()


def _mailchimp_refusal(status: int, body: Any, invalid: InvalidRequest) -> bool:
    if not isinstance(body, dict) or status != 400 or body.get("title") != "Invalid Resource":
        return False
    return (all(k in body for k in ("type", "detail", "instance")) and body["status"] == 400
            and any(e.get("field") == _square_field(invalid) for e in body.get("errors", [])))


_REFUSALS = {"stripe": _stripe_refusal, "square": _square_refusal,
             "mailchimp": _mailchimp_refusal, "quickbooks": quickbooks_refusal}


@pytest.mark.parametrize("emulator_type", [StripeEmulator, SquareEmulator, MailchimpEmulator,
                                           QuickBooksEmulator],
                         ids=["stripe", "square", "mailchimp", "quickbooks"])
def test_generated_invalid_requests_are_refused_in_the_provider_shape(
        emulator_type: type[Emulator], loop: asyncio.AbstractEventLoop) -> None:
    emulator = emulator_type(EmulatorSettings(enforce_rate_limits=False))
    description = _described(emulator)
    operations = described_operations(emulator, description)
    assert len(operations) >= 8
    form = description.form
    refused = _REFUSALS[emulator.name]
    cm = _served(emulator)
    http = loop.run_until_complete(cm.__aenter__())
    try:
        @settings(max_examples=300, deadline=None, derandomize=True,
                  suppress_health_check=[HealthCheck.too_slow])
        @given(invalid_request_strategy(operations, form=form,
                                        path_values=getattr(emulator, "path_values", None)))
        def refused_in_shape(invalid: InvalidRequest) -> None:
            loop.run_until_complete(check_refused(http, invalid, form=form, refused=refused))

        refused_in_shape()
    finally:
        loop.run_until_complete(cm.__aexit__(None, None, None))
