"""schemathesis against the admin API's own OpenAPI description, on a served app with a
platform admin's token: every generated request (valid and invalid) must be answered as
the description says, never with a server error. Examples are drawn afresh each run (25 per
operation, so the run stays short); a failure prints the seed that reproduces it."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import jwt
import pytest
import schemathesis
from hypothesis import HealthCheck, settings

from daemon.http.openapi import OPENAPI
from tests.integration import webhook_support as ws

SECRET = "schemathesis-secret-0123456789abcdef01234"
ISSUER = "https://platform.example"
AUDIENCE = "syncd"

schema = schemathesis.openapi.from_dict(OPENAPI)


@pytest.fixture
def api_url(db_url: str, tmp_path: Path) -> Iterator[str]:
    """The app on a real port, its loop in a thread (schemathesis calls are synchronous)."""
    with ws.app_in_thread(db_url, tmp_path, api_jwt_secret=SECRET, api_jwt_issuer=ISSUER,
                          api_jwt_audience=AUDIENCE) as url:
        yield f"{url}/api/v1"


def _token() -> str:
    now = int(time.time())
    return jwt.encode({"iss": ISSUER, "aud": AUDIENCE, "exp": now + 3600,
                       "role": "platform_admin", "sub": "schemathesis"}, SECRET,
                      algorithm="HS256")


@schema.auth()
class PlatformAdmin:
    """A platform admin's bearer token, set by schemathesis itself on each generated case.

    Set this way, and not as a header added to every request, the token is left off the
    negative cases generated to test a missing or malformed ``Authorization`` header:
    adding it to those turned them into valid requests, rightly answered 200, which
    schemathesis then reported as invalid data accepted.
    """

    def get(self, case: schemathesis.Case, context: schemathesis.AuthContext) -> str:
        return _token()

    def set(self, case: schemathesis.Case, data: str,
            context: schemathesis.AuthContext) -> None:
        case.headers = {**(case.headers or {}), "Authorization": f"Bearer {data}"}


@schema.parametrize()
@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                 HealthCheck.filter_too_much])
def test_the_admin_api_answers_as_its_description_says(
    case: schemathesis.Case, api_url: str
) -> None:
    case.call_and_validate(base_url=api_url)
