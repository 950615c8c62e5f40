"""The contract checker itself: it finds the operations and refuses what does not fit."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.contract.conftest import SPECS
from tests.contract.openapi import OpenAPI, form_names, unknown_form_names


@pytest.mark.parametrize(("method", "path", "operation_id"), [
    ("POST", "/v2/customers", "CreateCustomer"),
    ("POST", "/v2/customers/search", "SearchCustomers"),
    ("PUT", "/v2/customers/CUST123", "UpdateCustomer"),
    ("POST", "/v2/customers/bulk-create", "BulkCreateCustomers"),
    ("POST", "/v2/catalog/batch-upsert", "BatchUpsertCatalogObjects"),
    ("POST", "/v2/orders", "CreateOrder"),
])
def test_square_operations_are_found(square_api: OpenAPI, method: str, path: str,
                                     operation_id: str) -> None:
    op = square_api.operation(method, path)
    assert op is not None
    assert op.operation_id == operation_id


def test_unknown_operations_are_not_found(square_api: OpenAPI, stripe_api: OpenAPI) -> None:
    assert square_api.operation("POST", "/v2/customerz") is None
    assert stripe_api.operation("GET", "/v1/nothing") is None


def test_square_bodies_are_checked_against_component_schemas(square_api: OpenAPI) -> None:
    op = square_api.operation("POST", "/v2/customers")
    assert op is not None
    schema = op.request_schema("application/json")
    assert schema is not None
    good = {"idempotency_key": "k-1", "email_address": "ada@example.com", "given_name": "Ada"}
    assert square_api.schema_errors(schema, good) == []
    bad = {"idempotency_key": "k-1", "email_address": 5}
    assert any("email_address" in e for e in square_api.schema_errors(schema, bad))
    response = op.response_schema(200)
    assert response is not None
    wrong = {"customer": {"id": "C1", "version": "seven"}}
    assert any("customer/version" in e for e in square_api.schema_errors(response, wrong))


@pytest.mark.parametrize(("method", "path", "template"), [
    ("POST", "/v1/customers", "/v1/customers"),
    ("GET", "/v1/customers/search", "/v1/customers/search"),
    ("POST", "/v1/customers/cus_123", "/v1/customers/{customer}"),
    ("POST", "/v1/prices", "/v1/prices"),
    ("POST", "/v1/products/prod_1", "/v1/products/{id}"),
])
def test_stripe_operations_are_found(stripe_api: OpenAPI, method: str, path: str,
                                     template: str) -> None:
    op = stripe_api.operation(method, path)
    assert op is not None
    assert op.template == template


def test_stripe_responses_and_form_names_are_checked(stripe_api: OpenAPI) -> None:
    fixtures = json.loads((SPECS / "stripe" / "fixtures3.json").read_text())["resources"]
    op = stripe_api.operation("POST", "/v1/customers")
    assert op is not None
    schema = op.response_schema(200)
    assert schema is not None
    assert stripe_api.schema_errors(schema, fixtures["customer"]) == []
    missing = {k: v for k, v in fixtures["customer"].items() if k != "id"}
    assert any("'id' is a required property" in e
               for e in stripe_api.schema_errors(schema, missing))
    error = op.response_schema(400)
    assert error is not None
    assert stripe_api.schema_errors(error, {"error": {"type": "invalid_request_error",
                                                      "message": "No such customer"}}) == []
    assert stripe_api.schema_errors(error, {"message": "flat"}) != []

    names = form_names(b"email=a%40b.c&name=Ada&metadata[venue]=v1&emial=x")
    assert names == {"email", "name", "metadata", "emial"}
    assert unknown_form_names(op, names) == {"emial"}


def test_missing_descriptions_fail_in_ci_and_skip_elsewhere(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    from tests.contract.conftest import require

    missing = tmp_path / "api.json"
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="API descriptions are not at"):
        require(missing)
    monkeypatch.delenv("CI")
    with pytest.raises(pytest.skip.Exception):
        require(missing)
    missing.write_text("{}")
    monkeypatch.setenv("CI", "true")
    assert require(missing) == missing
