"""Structured logging: structlog, JSON off a terminal, readable on one, secrets masked.

Exceptions are formatted to text first (``log.exception``, ``exc_info=True`` or an exception
instance; chained causes and contexts included), then every event passes through
:func:`redact` before it is rendered. So a value under a secret-looking key (at any depth of
dicts, lists and tuples) is masked, and so is a secret inside any text the record carries:
a traceback, a message, the ``repr`` of a logged object (:func:`redact_text`: passwords in
URLs, ``key=value`` and ``key: value`` pairs whose key names a secret, ``Bearer`` and
``Basic`` credentials).
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Mapping, MutableMapping
from typing import Any, TextIO

import structlog

__all__ = [
    "MASK",
    "configure_logging",
    "get_logger",
    "is_secret_key",
    "mask_url",
    "redact",
    "redact_text",
]

MASK = "***"

# Key names that hold secrets. Matched as whole words inside snake, kebab or camel case
# names: "access_token", "X-Api-Key", "refreshToken", "client_secret", "code".
_SECRET_WORDS = (
    "token",
    "secret",
    "password",
    "passwd",
    "authorization",
    "api_key",
    "apikey",
    "refresh",
    "signature",
    "cookie",
    "credential",
    "credentials",
    "private_key",
)
# "code" alone is an OAuth authorization code; "status_code" or "currency_code" is not secret.
_CODE_KEYS = frozenset({"code", "auth_code", "authorization_code", "oauth_code", "verifier"})
_URL_PASSWORD = re.compile(r"(?P<head>[a-z][a-z0-9+.-]*://[^:/@\s]+:)(?P<pw>[^@\s]+)(?P<at>@)")
# In free text: a secret-looking key, then "=" or ":" (quoted as in JSON, a Python repr or an
# escaped JSON string inside JSON), then its value up to a quote, space or delimiter. "="
# takes no spaces around it, so source lines such as "token = await ..." stay readable.
_KEY_VALUE = re.compile(
    r"(?P<key>[A-Za-z][\w.-]*)(?P<sep>\\?[\"']?(?:=|:[ \t]*)\\?[\"']?)"
    r"(?P<value>(?:(?:Bearer|Basic|Digest|Token)[ \t]+)?[^\s\"'\\,;&)}\]]+)",
    re.IGNORECASE,
)
_AUTH_SCHEME = re.compile(r"\b(?P<scheme>Bearer|Basic)[ \t]+(?P<value>[A-Za-z0-9._~+/=-]{6,})")


def _words(key: str) -> str:
    key = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", key)
    return "_" + re.sub(r"[^a-z0-9]+", "_", key.lower()).strip("_") + "_"


def is_secret_key(key: str) -> bool:
    """True when a mapping key names a secret (see the module docstring)."""
    words = _words(key)
    if words.strip("_") in _CODE_KEYS:
        return True
    return any(f"_{w}_" in words for w in _SECRET_WORDS)


def mask_url(url: str) -> str:
    """A URL with its password replaced by :data:`MASK`."""
    return _URL_PASSWORD.sub(lambda m: f"{m['head']}{MASK}{m['at']}", url)


def _mask_pair(match: re.Match[str]) -> str:
    key = match["key"]
    if match["value"] == MASK or not is_secret_key(key):
        return match[0]
    if _words(key).strip("_") in _CODE_KEYS and "=" not in match["sep"]:
        return match[0]  # "error code: card_declined" is prose; "?code=..." is a secret
    return f"{match['key']}{match['sep']}{MASK}"


def redact_text(text: str) -> str:
    """``text`` with the secrets it shows masked: a URL's password, the value of a
    ``key=value`` or ``key: value`` pair whose key names a secret (see
    :func:`is_secret_key`), and ``Bearer``/``Basic`` credentials."""
    if "://" in text and "@" in text:
        text = mask_url(text)
    if "=" in text or ":" in text:
        text = _KEY_VALUE.sub(_mask_pair, text)
    if "earer" in text or "asic" in text:
        text = _AUTH_SCHEME.sub(lambda m: f"{m['scheme']} {MASK}", text)
    return text


def redact(value: Any, _depth: int = 0) -> Any:
    """A copy of ``value`` with secret-looking keys masked at any depth, and the text of
    every string (and the ``repr`` of every other object) passed through
    :func:`redact_text`. Numbers, booleans and ``None`` are kept as they are."""
    if _depth > 32:
        return MASK
    if isinstance(value, Mapping):
        return {
            k: MASK if isinstance(k, str) and v is not None and is_secret_key(k)
            else redact(v, _depth + 1)
            for k, v in value.items()
        }
    if isinstance(value, tuple):
        return tuple(redact(v, _depth + 1) for v in value)
    if isinstance(value, list | set | frozenset):
        return [redact(v, _depth + 1) for v in value]
    if isinstance(value, str):
        return redact_text(value)
    if value is None or isinstance(value, bool | int | float):
        return value
    # Renderers would show this object's repr (JSON's fallback, the console's default): mask
    # what that text holds instead of trusting it.
    return redact_text(repr(value))


def _redact_processor(
    _logger: Any, _name: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    return redact(event_dict)  # type: ignore[no-any-return]


def configure_logging(
    level: str = "info", fmt: str = "auto", stream: TextIO | None = None
) -> None:
    """Configure structlog for the process. ``fmt`` is ``auto``, ``json`` or ``console``."""
    out = stream if stream is not None else sys.stderr
    use_json = fmt == "json" or (fmt == "auto" and not out.isatty())
    # The console renderer formats exceptions itself, after every other processor, and with
    # rich installed it would show each frame's local variables: it gets only the text that
    # format_exc_info made, already redacted (plain_traceback is there for exc_info that a
    # later processor might add).
    renderer: Any = (
        structlog.processors.JSONRenderer(sort_keys=False)
        if use_json
        else structlog.dev.ConsoleRenderer(
            colors=out.isatty(), exception_formatter=structlog.dev.plain_traceback)
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            # Format first (stack and exception become text), then redact that text.
            structlog.processors.StackInfoRenderer(),
            structlog.processors.format_exc_info,
            _redact_processor,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.getLevelNamesMapping()[level.upper()]
        ),
        logger_factory=structlog.PrintLoggerFactory(file=out),
        cache_logger_on_first_use=False,
    )


def get_logger(name: str | None = None) -> Any:
    """A structlog logger; ``name`` becomes the ``component`` field."""
    # Initial values passed here stay lazy: the logger follows configure_logging() called later.
    return structlog.get_logger() if name is None else structlog.get_logger(component=name)
