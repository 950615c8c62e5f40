"""Admin API authentication: the platform's JWT, and who it lets see what.

A token is accepted when it is signed with HS256 by ``SYNCD_API_JWT_SECRET`` or with RS256
by the key whose public half is ``SYNCD_API_JWT_PUBLIC_KEY`` (the algorithm named in the
token's header picks which; ``none`` and every other algorithm are refused), its ``iss`` and
``aud`` are the configured ones, and it carries an ``exp`` that has not passed (and an
``nbf``, if any, that has). Its ``role`` claim says what it may see:

- ``platform_admin``: every venue;
- ``venue_admin``: the venues listed in its ``venues`` claim (a list of venue UUIDs);
- anything else: nothing (403).

A token that fails any check is 401; a ``venues`` claim that is not a list of UUIDs is a
malformed token, 401 as well.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt

from daemon.errors import SyncdError
from daemon.settings import Settings

__all__ = ["AuthFailed", "Forbidden", "NotConfigured", "Principal", "TokenVerifier"]

PLATFORM_ADMIN = "platform_admin"
VENUE_ADMIN = "venue_admin"


class AuthFailed(SyncdError):
    """The request carries no acceptable token (401). The message is safe to return."""


class Forbidden(SyncdError):
    """The token is valid but grants nothing here (403)."""


class NotConfigured(SyncdError):
    """No key, issuer or audience is configured: the admin API accepts no one."""


@dataclass(frozen=True, slots=True)
class Principal:
    """Who a request acts as: a subject, and the venues it may see (None: every venue)."""

    subject: str
    venues: frozenset[uuid.UUID] | None

    @property
    def is_platform_admin(self) -> bool:
        return self.venues is None

    def may_see(self, venue_id: uuid.UUID | None) -> bool:
        """Whether a resource of ``venue_id`` exists for this principal (None: no venue)."""
        if self.venues is None:
            return True
        return venue_id is not None and venue_id in self.venues

    def venue_filter(self) -> list[uuid.UUID] | None:
        """The venues to filter queries by; None means no filter."""
        return None if self.venues is None else sorted(self.venues)


def _public_key(value: str) -> str:
    text = value.strip()
    if text.startswith("-----BEGIN"):
        return text
    try:
        return Path(text).expanduser().read_text(encoding="utf-8")
    except OSError as exc:
        raise NotConfigured(
            f"SYNCD_API_JWT_PUBLIC_KEY names {text}, which cannot be read "
            f"({exc.strerror or type(exc).__name__})") from None


class TokenVerifier:
    """Checks bearer tokens against the settings."""

    def __init__(self, settings: Settings) -> None:
        self._keys: dict[str, Any] = {}
        if settings.api_jwt_secret is not None:
            self._keys["HS256"] = settings.api_jwt_secret.get_secret_value()
        if settings.api_jwt_public_key:
            self._keys["RS256"] = _public_key(settings.api_jwt_public_key)
        self.issuer = settings.api_jwt_issuer
        self.audience = settings.api_jwt_audience
        self.leeway = settings.api_jwt_leeway_seconds

    @property
    def configured(self) -> bool:
        return bool(self._keys) and bool(self.issuer) and bool(self.audience)

    def principal(self, authorization: str | None) -> Principal:
        """The principal of an ``Authorization`` header value."""
        if not self.configured:
            raise NotConfigured("admin API authentication is not configured")
        scheme, _, token = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise AuthFailed("a bearer token is required")
        claims = self._claims(token.strip())
        role = claims.get("role")
        subject = str(claims.get("sub", ""))
        if role == PLATFORM_ADMIN:
            return Principal(subject, None)
        if role == VENUE_ADMIN:
            return Principal(subject, _venues(claims.get("venues")))
        raise Forbidden("the token grants no admin role")

    def _claims(self, token: str) -> dict[str, Any]:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise AuthFailed("the token is malformed") from None
        algorithm = header.get("alg")
        if not isinstance(algorithm, str) or algorithm not in self._keys:
            raise AuthFailed("the token's algorithm is not accepted")
        key = self._keys[algorithm]
        try:
            claims: dict[str, Any] = jwt.decode(
                token, key, algorithms=[algorithm], issuer=self.issuer,
                audience=self.audience, leeway=self.leeway,
                options={"require": ["exp", "iss", "aud"]})
        except jwt.ExpiredSignatureError:
            raise AuthFailed("the token has expired") from None
        except jwt.ImmatureSignatureError:
            raise AuthFailed("the token is not valid yet") from None
        except jwt.PyJWTError:
            raise AuthFailed("the token is invalid") from None
        return claims


def _venues(value: Any) -> frozenset[uuid.UUID]:
    if not isinstance(value, list):
        raise AuthFailed("the token's venues claim is not a list")
    venues: set[uuid.UUID] = set()
    for item in value:
        if not isinstance(item, str):
            raise AuthFailed("the token's venues claim holds a value that is not a venue id")
        try:
            venues.add(uuid.UUID(item))
        except ValueError:
            raise AuthFailed(
                "the token's venues claim holds a value that is not a venue id") from None
    return frozenset(venues)
