"""The Square plugin's requests and the Square emulator's responses fit Square's API
description (``shared/specs/square/api.json``)."""

from __future__ import annotations

import pytest

from daemon.plugins import load_plugins
from tests.contract.openapi import OpenAPI
from tests.contract.traffic import Exchange, record_traffic

#: Square's error envelope, for statuses the description does not list.
ERRORS = {"type": "object", "required": ["errors"],
          "properties": {"errors": {"type": "array", "minItems": 1,
                                    "items": {"$ref": "#/components/schemas/Error"}}}}


@pytest.fixture(scope="module")
def traffic(square_api: OpenAPI) -> list[Exchange]:
    exchanges = record_traffic(load_plugins(["square"]).provider("square"))
    assert exchanges, "the Square client sent nothing"
    return exchanges


def test_every_request_is_a_published_operation(square_api: OpenAPI,
                                                traffic: list[Exchange]) -> None:
    unknown = {str(x) for x in traffic if square_api.operation(x.method, x.path) is None}
    assert not unknown, f"not in Square's API description: {sorted(unknown)}"


def test_writes_reach_the_batch_endpoints(square_api: OpenAPI,
                                          traffic: list[Exchange]) -> None:
    ids = {op.operation_id for x in traffic
           if (op := square_api.operation(x.method, x.path)) is not None}
    assert "BatchUpsertCatalogObjects" in ids
    assert ids & {"BulkCreateCustomers", "CreateCustomer"}


def test_request_bodies_fit_the_schemas(square_api: OpenAPI, traffic: list[Exchange]) -> None:
    problems: list[str] = []
    sent = [x for x in traffic
            if square_api.operation(x.method, x.path) is not None and x.request_body]
    assert sent, "no request body was sent"
    for x in sent:
        op = square_api.operation(x.method, x.path)
        assert op is not None
        assert x.request_type == "application/json", f"{x}: sent {x.request_type}"
        schema = op.request_schema("application/json")
        assert schema is not None, f"{x}: the operation takes no body"
        problems += [f"{x}: {e}" for e in square_api.schema_errors(schema, x.request_json())]
    assert not problems, "\n".join(problems[:20])


def test_every_write_carries_an_idempotency_key(square_api: OpenAPI,
                                                traffic: list[Exchange]) -> None:
    keyed = []
    for x in traffic:
        op = square_api.operation(x.method, x.path)
        if op is None or x.method != "POST" or "search" in x.path or x.status == 401:
            continue
        schema = op.request_schema("application/json") or {}
        ref = str(schema.get("$ref", ""))
        props = square_api.document["components"]["schemas"][ref.rsplit("/", 1)[-1]].get(
            "properties", {}) if ref else {}
        if "idempotency_key" in props:
            keyed.append(x)
    assert keyed, "no write that takes an idempotency_key was sent"
    for x in keyed:
        assert x.request_json().get("idempotency_key"), f"{x}: no idempotency_key"


def test_responses_fit_the_schemas(square_api: OpenAPI, traffic: list[Exchange]) -> None:
    problems: list[str] = []
    answered = [x for x in traffic if square_api.operation(x.method, x.path) is not None]
    assert answered, "no published operation was called"
    for x in answered:
        op = square_api.operation(x.method, x.path)
        assert op is not None
        assert x.is_json_response, f"{x}: answered {x.response_type or 'no content type'}"
        schema = op.response_schema(x.status) if x.status < 400 else None
        schema = schema or ERRORS
        problems += [f"{x}: {e}" for e in square_api.schema_errors(schema, x.response_json())]
    assert not problems, "\n".join(problems[:20])


def test_bad_credentials_get_squares_401(traffic: list[Exchange]) -> None:
    denied = [x for x in traffic if x.status == 401]
    assert denied, "no call was refused with bad credentials"
    for x in denied:
        [error] = x.response_json()["errors"]
        assert error["category"] == "AUTHENTICATION_ERROR"
        assert error["code"] == "UNAUTHORIZED"


def test_the_emulators_limits_are_squares_published_ones(square_api: OpenAPI) -> None:
    from plugins.square import emulator

    schemas = square_api.document["components"]["schemas"]

    def key_max(request: str) -> int:
        return int(schemas[request]["properties"]["idempotency_key"]["maxLength"])

    assert key_max("BatchUpsertCatalogObjectsRequest") == emulator.CATALOG_IDEMPOTENCY_MAX
    assert key_max("CreateOrderRequest") == emulator.ORDER_IDEMPOTENCY_MAX
    assert key_max("CreatePaymentRequest") == emulator.PAYMENT_IDEMPOTENCY_MAX
    bulk = schemas["BulkCreateCustomersRequest"]["properties"]["customers"]["description"]
    assert f"1 to {emulator.MAX_BULK_CUSTOMERS} individual create requests" in bulk
    batches = schemas["BatchUpsertCatalogObjectsRequest"]["properties"]["batches"]["description"]
    assert f"up to {emulator.MAX_BATCH_OBJECTS:,} objects" in batches
    assert f"may not exceed {emulator.MAX_REQUEST_OBJECTS:,}" in batches
