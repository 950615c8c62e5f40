from __future__ import annotations

import io
import json

import structlog
from hypothesis import given
from hypothesis import strategies as st

from daemon.logs import MASK, configure_logging, get_logger, is_secret_key, mask_url, redact


def test_secret_keys_are_recognised_in_any_case_style() -> None:
    for key in ["token", "access_token", "refreshToken", "X-Api-Key", "api_key", "client_secret",
                "password", "Authorization", "code", "webhook_signature", "refresh"]:
        assert is_secret_key(key), key
    for key in ["status_code", "currency_code", "venue_id", "provider", "tokenizer_name_len"]:
        assert not is_secret_key(key), key


def test_redact_masks_at_any_depth_and_keeps_the_rest() -> None:
    event = {
        "event": "oauth.exchanged",
        "venue": "v1",
        "response": {"access_token": "at-123", "nested": [{"refresh_token": "rt-9"}],
                     "expires_in": 3600},
        "headers": ({"Authorization": "Bearer x"},),
    }
    out = redact(event)
    assert out["response"]["access_token"] == MASK
    assert out["response"]["nested"][0]["refresh_token"] == MASK
    assert out["response"]["expires_in"] == 3600
    assert out["headers"][0]["Authorization"] == MASK
    assert out["venue"] == "v1"
    assert event["response"]["access_token"] == "at-123"  # the original is untouched


def test_urls_lose_their_password() -> None:
    assert mask_url("postgresql://u:s3cret@db:5432/x") == f"postgresql://u:{MASK}@db:5432/x"
    assert redact({"dsn": "postgres://a:b@h/d"})["dsn"] == f"postgres://a:{MASK}@h/d"


@given(st.recursive(
    st.text(max_size=5),
    lambda inner: st.dictionaries(st.sampled_from(["token", "name", "secret", "id"]), inner,
                                  max_size=3) | st.lists(inner, max_size=3),
    max_leaves=10,
))
def test_no_value_under_a_secret_key_survives(value: object) -> None:
    def walk(v: object) -> None:
        if isinstance(v, dict):
            for k, item in v.items():
                if k in ("token", "secret"):
                    assert item in (MASK, None)
                else:
                    walk(item)
        elif isinstance(v, list):
            for item in v:
                walk(item)

    walk(redact({"root": value}))


def test_json_logs_are_redacted_end_to_end() -> None:
    buf = io.StringIO()
    configure_logging("info", "json", stream=buf)
    try:
        get_logger("test").info("token.refreshed", refresh_token="rt-secret", venue="v")
        get_logger("test").debug("dropped")
    finally:
        structlog.reset_defaults()
    lines = [json.loads(line) for line in buf.getvalue().splitlines()]
    assert len(lines) == 1
    assert lines[0]["refresh_token"] == MASK
    assert lines[0]["event"] == "token.refreshed"
    assert lines[0]["component"] == "test"
    assert "rt-secret" not in buf.getvalue()
