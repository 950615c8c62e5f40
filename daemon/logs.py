"""Structured logging: structlog, JSON off a terminal, readable on one, secrets masked.

Every event passes through :func:`redact` before it is rendered, so a token that slips into
a log call's keyword arguments (at any depth of dicts, lists and tuples) is masked.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Mapping, MutableMapping
from typing import Any, TextIO

import structlog

__all__ = ["MASK", "configure_logging", "get_logger", "is_secret_key", "mask_url", "redact"]

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


def redact(value: Any, _depth: int = 0) -> Any:
    """A copy of ``value`` with secret-looking keys masked at any depth."""
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
    if isinstance(value, str) and "://" in value and "@" in value:
        return mask_url(value)
    return value


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
    renderer: Any = (
        structlog.processors.JSONRenderer(sort_keys=False)
        if use_json
        else structlog.dev.ConsoleRenderer(colors=out.isatty())
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            _redact_processor,
            (structlog.processors.format_exc_info if use_json
             else structlog.processors.StackInfoRenderer()),
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
