"""The Stripe plugin's requests and the Stripe emulator's responses fit Stripe's API
description (``shared/specs/stripe/spec3.yaml``)."""

from __future__ import annotations

import pytest

from daemon.plugins import load_plugins
from tests.contract.openapi import OpenAPI, form_names, unknown_form_names
from tests.contract.traffic import Exchange, record_traffic


@pytest.fixture(scope="module")
def traffic(stripe_api: OpenAPI) -> list[Exchange]:
    exchanges = record_traffic(load_plugins(["stripe"]).provider("stripe"))
    assert exchanges, "the Stripe client sent nothing"
    return exchanges


def test_every_request_is_a_published_operation(stripe_api: OpenAPI,
                                                traffic: list[Exchange]) -> None:
    unknown = {str(x) for x in traffic if stripe_api.operation(x.method, x.path) is None}
    assert not unknown, f"not in Stripe's API description: {sorted(unknown)}"


def test_writes_create_products_with_prices_and_customers(stripe_api: OpenAPI,
                                                          traffic: list[Exchange]) -> None:
    written = {op.template for x in traffic if x.method == "POST"
               if (op := stripe_api.operation(x.method, x.path)) is not None}
    assert {"/v1/products", "/v1/customers"} <= written
    # A price is created with the product (default_price_data) or on its own (/v1/prices).
    product_forms = [form_names(x.request_body) for x in traffic
                     if x.method == "POST" and x.path == "/v1/products" and x.status == 200]
    assert product_forms, "no product was created"
    assert "/v1/prices" in written or all("default_price_data" in f for f in product_forms)


def test_form_bodies_use_published_parameter_names(stripe_api: OpenAPI,
                                                   traffic: list[Exchange]) -> None:
    problems: list[str] = []
    posted = [x for x in traffic if x.method == "POST" and x.request_body
              and stripe_api.operation(x.method, x.path) is not None]
    assert posted, "no form body was sent"
    for x in posted:
        op = stripe_api.operation(x.method, x.path)
        assert op is not None
        if x.request_type != "application/x-www-form-urlencoded":
            problems.append(f"{x}: sent {x.request_type}, Stripe v1 takes form bodies")
            continue
        unknown = unknown_form_names(op, form_names(x.request_body))
        if unknown:
            problems.append(f"{x}: unknown parameters {sorted(unknown)}")
    assert not problems, "\n".join(problems)


def test_query_parameters_are_published(stripe_api: OpenAPI, traffic: list[Exchange]) -> None:
    problems: list[str] = []
    reads = [x for x in traffic
             if x.method == "GET" and stripe_api.operation(x.method, x.path) is not None]
    assert reads, "no GET was sent"
    for x in reads:
        op = stripe_api.operation(x.method, x.path)
        assert op is not None
        names = {k.split("[", 1)[0] for k in x.query}
        unknown = names - op.query_parameters()
        if unknown:
            problems.append(f"{x}: unknown query parameters {sorted(unknown)}")
    assert not problems, "\n".join(problems)


def test_creates_carry_idempotency_keys(stripe_api: OpenAPI, traffic: list[Exchange]) -> None:
    # The header is not in the description; issue 4 and Stripe's docs require it on creates.
    creates = [x for x in traffic if x.method == "POST" and x.status != 401
               and (op := stripe_api.operation(x.method, x.path)) is not None
               and "{" not in op.template]
    assert creates, "no create was sent"
    missing = [str(x) for x in creates if not x.request_headers.get("idempotency-key")]
    assert not missing, f"creates without an Idempotency-Key header: {missing}"


def test_responses_fit_the_schemas(stripe_api: OpenAPI, traffic: list[Exchange]) -> None:
    problems: list[str] = []
    answered = [x for x in traffic if stripe_api.operation(x.method, x.path) is not None]
    assert answered, "no published operation was called"
    for x in answered:
        op = stripe_api.operation(x.method, x.path)
        assert op is not None
        assert x.is_json_response, f"{x}: answered {x.response_type or 'no content type'}"
        schema = op.response_schema(x.status)
        assert schema is not None, f"{x}: status {x.status} is not described"
        problems += [f"{x}: {e}" for e in stripe_api.schema_errors(schema, x.response_json())]
    assert not problems, "\n".join(problems[:20])


def test_bad_credentials_get_stripes_401(traffic: list[Exchange]) -> None:
    denied = [x for x in traffic if x.status == 401]
    assert denied, "no call was refused with bad credentials"
    for x in denied:
        assert x.response_json()["error"]["type"] == "invalid_request_error"
