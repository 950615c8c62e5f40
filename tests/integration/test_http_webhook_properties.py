"""Hypothesis-generated bad deliveries: forged, tampered, stale, oversized, malformed, wrong
content type, huge or repeated headers. None is stored, each gets the right status, and the
server keeps serving; a valid delivery replayed is stored once."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.integration import webhook_support as ws

BASE = "https://syncd.example"
MAX_BODY = 8192
MAX_FIELD = 1024
MAX_HEADERS = 32
PROVIDERS = ("square", "stripe", "mailchimp", "quickbooks")
TIMESTAMPED = ("stripe", "mailchimp")


class Served:
    def __init__(self, url: str, db_url: str) -> None:
        self.url = url
        self.db_url = db_url
        self.http = httpx.Client(timeout=30)

    def stored(self) -> int:
        async def count() -> int:
            conn = await asyncpg.connect(self.db_url)
            try:
                return int(await conn.fetchval("SELECT count(*) FROM integration_webhooks"))
            finally:
                await conn.close()

        return asyncio.run(count())


@pytest.fixture
def served(db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Served]:
    """The app on a real port, its loop in a thread of its own (hypothesis tests are sync)."""
    for name, value in ws.ENV.items():
        monkeypatch.setenv(name, value)
    with ws.app_in_thread(db_url, tmp_path, webhook_max_body_bytes=MAX_BODY,
                          http_max_field_size=MAX_FIELD, http_max_headers=MAX_HEADERS) as url:
        result = Served(url, db_url)
        try:
            yield result
        finally:
            result.http.close()


header_text = st.text(st.characters(min_codepoint=33, max_codepoint=126), max_size=200)
MUTATIONS = ("tamper", "forge", "wrong_secret", "missing", "stale", "oversized",
             "content_type", "repeated", "huge_header", "many_headers", "malformed")
EXPECTED = {
    "tamper": {401}, "forge": {401}, "wrong_secret": {401}, "missing": {401},
    "stale": {401}, "oversized": {413}, "content_type": {415}, "repeated": {400},
    "huge_header": {400, 431}, "many_headers": {400, 431}, "malformed": {400},
}


@st.composite
def bad_deliveries(draw: st.DrawFn) -> tuple[str, str, bytes, list[tuple[str, str]]]:
    provider = draw(st.sampled_from(PROVIDERS))
    mutation = draw(st.sampled_from(MUTATIONS))
    if mutation == "stale" and provider not in TIMESTAMPED:
        provider = draw(st.sampled_from(TIMESTAMPED))
    if mutation == "malformed" and provider == "mailchimp":
        provider = draw(st.sampled_from(("square", "stripe", "quickbooks")))
    n = draw(st.integers(0, 10**6))
    path = ws.path_for(provider)
    body, content_type = ws.sample_body(provider, n)

    def signed(payload: bytes, **kw: object) -> list[tuple[str, str]]:
        return [("Content-Type", content_type),
                *ws.sign(provider, payload, BASE + path, **kw).items()]  # type: ignore[arg-type]

    headers = signed(body)
    name = headers[1][0]
    if mutation == "tamper":
        extra = draw(st.binary(min_size=1, max_size=64))
        at = draw(st.integers(0, len(body)))
        body = body[:at] + extra + body[at:]
    elif mutation == "forge":
        headers[1] = (name, draw(header_text))
    elif mutation == "wrong_secret":
        secret = draw(st.text(min_size=1, max_size=40).filter(
            lambda s: s != ws.secret_for(provider)))
        headers = signed(body, secret=secret)
    elif mutation == "missing":
        headers = headers[:1]
    elif mutation == "stale":
        age = draw(st.integers(301, 10**7))
        headers = signed(body, timestamp=int(time.time()) - age)
    elif mutation == "oversized":
        pad = b" " * (MAX_BODY + draw(st.integers(1, 4 * MAX_BODY)))
        body = body + pad if content_type == "application/json" else body + b"&pad=" + pad
        headers = signed(body)
    elif mutation == "content_type":
        wrong = draw(st.sampled_from(["text/plain", "application/xml", "multipart/form-data",
                                      "application/octet-stream", "text/html"]))
        headers[0] = ("Content-Type", wrong)
    elif mutation == "repeated":
        headers.append(headers[1] if draw(st.booleans()) else (name, draw(header_text)))
    elif mutation == "huge_header":
        headers.append(("X-Padding", "a" * draw(st.integers(MAX_FIELD + 1, 4 * MAX_FIELD))))
    elif mutation == "many_headers":
        count = draw(st.integers(MAX_HEADERS + 1, 3 * MAX_HEADERS))
        headers.extend((f"X-Extra-{i}", "1") for i in range(count))
    else:
        body = draw(st.binary(min_size=1, max_size=300).filter(_not_a_json_document))
        headers = signed(body)
    return mutation, path, body, headers


def _not_a_json_document(body: bytes) -> bool:
    try:
        return not isinstance(json.loads(body), dict | list)
    except (ValueError, RecursionError):
        return True


@settings(max_examples=80, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(case=bad_deliveries())
def test_bad_deliveries_are_refused_with_the_right_status_and_never_stored(
    served: Served, case: tuple[str, str, bytes, list[tuple[str, str]]]
) -> None:
    mutation, path, body, headers = case
    response = served.http.post(served.url + path, content=body, headers=headers)
    assert response.status_code in EXPECTED[mutation], (mutation, response.text)
    assert served.http.get(served.url + "/healthz").status_code == 200
    assert served.stored() == 0


@settings(max_examples=20, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(provider=st.sampled_from(PROVIDERS), n=st.integers(0, 10**9),
       repeats=st.integers(2, 4))
def test_a_valid_delivery_replayed_is_stored_once(served: Served, provider: str, n: int,
                                                  repeats: int) -> None:
    before = served.stored()
    path, body, headers = ws.signed(provider, n)
    statuses = [served.http.post(served.url + path, content=body, headers=headers).json()
                for _ in range(repeats)]
    first = statuses[0]["status"]
    assert all(s == {"status": "duplicate"} for s in statuses[1:])
    assert served.stored() == before + (1 if first == "stored" else 0)
