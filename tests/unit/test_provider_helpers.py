from __future__ import annotations

from typing import Any

import httpx
import pytest
from pydantic import BaseModel, ValidationError

from daemon.plugins import load_plugins
from daemon.provider import (
    ClientContext,
    Credentials,
    Entity,
    ErrorKind,
    OutboundRecord,
    RecordResult,
    minor_units,
)


class Opts(BaseModel):
    location_id: str
    currency: str = "USD"


def _ctx(options: Any, **kw: Any) -> ClientContext:
    return ClientContext(venue_id="v", credentials=Credentials(), options=options,
                         http=httpx.AsyncClient(), **kw)


def test_options_as_validates_mappings_and_other_models() -> None:
    assert _ctx({"location_id": "L1"}).options_as(Opts) == Opts(location_id="L1")
    same = Opts(location_id="L2")
    assert _ctx(same).options_as(Opts) is same

    class Other(BaseModel):
        location_id: str

    assert _ctx(Other(location_id="L3")).options_as(Opts).location_id == "L3"
    with pytest.raises(ValidationError):
        _ctx({}).options_as(Opts)


def test_base_url_prefers_override_then_sandbox_then_production() -> None:
    caps = load_plugins(["square"]).provider("square").capabilities
    assert _ctx({}).base_url_for(caps) == caps.base_url
    assert caps.sandbox_base_url is not None
    assert _ctx({}, environment="sandbox").base_url_for(caps) == caps.sandbox_base_url
    assert _ctx({}, base_url="http://127.0.0.1:1").base_url_for(caps) == "http://127.0.0.1:1"


def test_failure_keeps_the_record_and_link() -> None:
    record = OutboundRecord(Entity.CUSTOMER, "c1", {}, "h", "k", remote_id="r1")
    result = RecordResult.failure(record, "rejected")
    assert (result.local_id, result.ok, result.remote_id) == ("c1", False, "r1")
    assert result.error_kind is ErrorKind.PERMANENT
    assert result.error == "rejected"
    assert RecordResult.failure(record, "later", ErrorKind.RETRYABLE).error_kind is \
        ErrorKind.RETRYABLE


@pytest.mark.parametrize(("value", "expected"), [
    (1250, 1250), (" 99 ", 99), ("0", 0), (True, None), (12.5, None), ("12.50", None),
    ("-5", None), (None, None),
])
def test_minor_units_accepts_only_whole_numbers(value: Any, expected: int | None) -> None:
    assert minor_units(value) == expected
