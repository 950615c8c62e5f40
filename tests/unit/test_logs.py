from __future__ import annotations

import io
import json
from collections.abc import Callable
from typing import Any

import pytest
import structlog
from hypothesis import given
from hypothesis import strategies as st

from daemon.logs import (
    MASK,
    configure_logging,
    get_logger,
    is_secret_key,
    mask_url,
    redact,
    redact_text,
)


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


# --- exceptions: formatted first, then redacted ------------------------------------------------

_DSN = "postgresql://syncd:pw-in-url-7731@db.internal:5432/syncd"


def _logged(fmt: str, emit: Callable[[Any], None]) -> str:
    """What ``emit(logger)`` writes, as text, with logging configured for ``fmt``."""
    buf = io.StringIO()
    configure_logging("info", fmt, stream=buf)
    try:
        emit(get_logger("test"))
    finally:
        structlog.reset_defaults()
    return buf.getvalue()


def _connect() -> None:
    raise ConnectionError(f"cannot connect to {_DSN}")


def _refresh() -> None:
    try:
        _connect()
    except ConnectionError as exc:
        raise RuntimeError(
            "token refresh failed: {'access_token': 'at-leak-1', 'expires_in': 3600} "
            "password=kw-leak-2 Authorization: Bearer bearer-leak-3") from exc


_LEAKS = ("pw-in-url-7731", "at-leak-1", "kw-leak-2", "bearer-leak-3")


def _via_exception(log: Any) -> None:
    try:
        _refresh()
    except RuntimeError:
        log.exception("sync.failed", venue="v1")


def _via_exc_info_true(log: Any) -> None:
    try:
        _refresh()
    except RuntimeError:
        log.error("sync.failed", exc_info=True)


def _via_exc_info_instance(log: Any) -> None:
    try:
        _refresh()
    except RuntimeError as exc:
        caught = exc
    log.warning("sync.failed", exc_info=caught)


@pytest.mark.parametrize("fmt", ["json", "console"])
@pytest.mark.parametrize("emit", [_via_exception, _via_exc_info_true, _via_exc_info_instance],
                         ids=["log.exception", "exc_info=True", "exc_info=exception"])
def test_secrets_inside_tracebacks_are_masked(fmt: str, emit: Callable[[Any], None]) -> None:
    text = _logged(fmt, emit)
    # The traceback is there, both exceptions of the chain included...
    assert "Traceback (most recent call last)" in text
    assert "ConnectionError: cannot connect to postgresql://syncd:***@db.internal" in text
    assert "RuntimeError: token refresh failed" in text
    assert "direct cause" in text
    # ...and no secret from either exception's text reached the log.
    for leak in _LEAKS:
        assert leak not in text, (leak, text)
    if fmt == "json":
        [line] = text.splitlines()
        record = json.loads(line)
        assert record["event"] == "sync.failed"
        assert "RuntimeError" in record["exception"]


@pytest.mark.parametrize("fmt", ["json", "console"])
def test_secrets_in_messages_and_object_reprs_are_masked(fmt: str) -> None:
    class Conn:
        def __repr__(self) -> str:
            return f"<Conn dsn={_DSN}>"

    text = _logged(fmt, lambda log: log.info(
        "db.error", detail="login failed for password=kw-leak-2", conn=Conn(),
        headers=["Authorization: Bearer bearer-leak-3"]))
    for leak in ("pw-in-url-7731", "kw-leak-2", "bearer-leak-3"):
        assert leak not in text, (leak, text)
    assert "db.error" in text


def test_text_redaction_keeps_ordinary_text() -> None:
    text = ("status_code=429 currency_code: USD tokens_used=12 "
            "https://api.example.com/v1/customers?limit=10 took 3 s")
    assert redact_text(text) == text
    assert redact_text("token=abc&venue=v1") == f"token={MASK}&venue=v1"
    assert redact_text('{"client_secret": "cs_1"}') == '{"client_secret": "' + MASK + '"}'
    assert redact_text("Authorization: Basic dXNlcjpwYXNz") == f"Authorization: {MASK}"
    assert redact_text("error code: card_declined") == "error code: card_declined"
    assert redact_text("GET /callback?code=oauth-code-1&state=s") == (
        f"GET /callback?code={MASK}&state=s")


@given(secret=st.text(alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJ0123456789-_.~+/",
                      min_size=8, max_size=40).filter(lambda s: s[0].isalnum()),
       template=st.sampled_from([
           "postgresql://user:{s}@db:5432/x", "password={s}", "api_key: {s}",
           "{{'refresh_token': '{s}'}}", '{{"client_secret": "{s}"}}',
           "Authorization: Bearer {s}", "X-Api-Key: {s}", "token={s}&x=1",
           'detail: {{\\"access_token\\": \\"{s}\\"}}',
       ]))
def test_no_secret_survives_redact_text(secret: str, template: str) -> None:
    text = "before " + template.format(s=secret) + " after"
    assert secret not in redact_text(text)
