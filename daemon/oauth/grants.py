"""Calls to a provider's token, revoke and metadata endpoints, and reading their answers.

Errors name the provider, the step, the HTTP status and the provider's error code, never a
token, code or client secret. :class:`GrantRefused` means the provider said no (a bad or
revoked grant: retrying will not help); :class:`GrantUnavailable` means it could not be
asked (network, 5xx, 429: try again later).
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from daemon.logs import get_logger
from daemon.oauth.app import OAuthApp, OAuthError
from daemon.vault.tokens import StoredToken

__all__ = ["GrantRefused", "GrantUnavailable", "exchange_code", "fetch_metadata",
           "refresh_grant", "revoke"]

log = get_logger("syncd.oauth")


class GrantRefused(OAuthError):
    """The provider refused the grant (invalid_grant, revoked, bad client)."""


class GrantUnavailable(OAuthError):
    """The provider could not be asked, or failed (network, 5xx, 429)."""


def _basic(app: OAuthApp) -> str:
    raw = f"{app.client_id}:{app.client_secret or ''}".encode()
    return "Basic " + base64.b64encode(raw).decode("ascii")


def _error_code(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return "no error code"
    if isinstance(body, Mapping):
        if isinstance(body.get("error"), str):
            return str(body["error"])
        errors = body.get("errors")
        if isinstance(errors, list) and errors and isinstance(errors[0], Mapping):
            return str(errors[0].get("code") or "error")
    return "no error code"


async def _post(app: OAuthApp, http: httpx.AsyncClient, step: str, url: str,
                fields: Mapping[str, str], *, body: str, headers: Mapping[str, str]
                ) -> httpx.Response:
    try:
        if body == "json":
            response = await http.post(url, json=dict(fields), headers=dict(headers))
        else:
            response = await http.post(url, data=dict(fields), headers=dict(headers))
    except httpx.HTTPError as exc:
        raise GrantUnavailable(f"{app.provider} {step}: cannot reach the provider "
                               f"({type(exc).__name__})") from None
    if response.status_code == 429 or response.status_code >= 500:
        raise GrantUnavailable(f"{app.provider} {step}: HTTP {response.status_code} "
                               f"({_error_code(response)})")
    if response.status_code >= 400:
        raise GrantRefused(f"{app.provider} {step} refused: HTTP {response.status_code} "
                           f"({_error_code(response)})")
    return response


def _client_fields(app: OAuthApp, *, pkce: bool) -> tuple[dict[str, str], dict[str, str]]:
    """Client authentication: (extra body fields, headers)."""
    headers = {"Accept": "application/json"}
    if app.spec.token_auth == "basic" and not pkce:  # noqa: S105 - a method name
        headers["Authorization"] = _basic(app)
        return {}, headers
    fields = {"client_id": app.client_id}
    if app.client_secret and not pkce:
        fields["client_secret"] = app.client_secret
    return fields, headers


def _when(value: Any, seconds: Any, now: datetime) -> datetime | None:
    if isinstance(value, str) and value:
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    if isinstance(seconds, int | float) and not isinstance(seconds, bool) and seconds > 0:
        return now + timedelta(seconds=float(seconds))
    return None


def _token(app: OAuthApp, response: httpx.Response, step: str, *,
           previous: StoredToken | None = None) -> tuple[StoredToken, dict[str, Any]]:
    try:
        body = response.json()
    except ValueError:
        body = None
    if not isinstance(body, Mapping) or not isinstance(body.get("access_token"), str):
        raise GrantUnavailable(f"{app.provider} {step}: the answer has no access token")
    now = datetime.now(UTC)
    scope = body.get("scope")
    scopes = (tuple(str(scope).replace(",", " ").split()) if isinstance(scope, str)
              else previous.scopes if previous else app.spec.scopes)
    refresh = body.get("refresh_token")
    token = StoredToken(
        access_token=body["access_token"],
        refresh_token=refresh if isinstance(refresh, str) and refresh else (
            previous.refresh_token if previous else None),
        expires_at=_when(body.get("expires_at"), body.get("expires_in"), now),
        refresh_token_expires_at=_when(body.get("refresh_token_expires_at"),
                                       body.get("x_refresh_token_expires_in"), now) or (
            previous.refresh_token_expires_at if previous else None),
        scopes=scopes,
        token_type=str(body.get("token_type") or "Bearer").capitalize(),
        account_id=previous.account_id if previous else None,
        account=dict(previous.account) if previous else {},
    )
    return token, dict(body)


async def exchange_code(app: OAuthApp, http: httpx.AsyncClient, code: str, *,
                        verifier: str | None) -> tuple[StoredToken, dict[str, Any]]:
    """Trade an authorization code for tokens; also the raw answer (for account facts)."""
    fields, headers = _client_fields(app, pkce=verifier is not None)
    fields.update({"grant_type": "authorization_code", "code": code,
                   "redirect_uri": app.redirect_uri})
    if verifier is not None:
        fields["code_verifier"] = verifier
    response = await _post(app, http, "code exchange", app.token_url, fields,
                           body=app.dialect.body, headers=headers)
    return _token(app, response, "code exchange")


async def refresh_grant(app: OAuthApp, http: httpx.AsyncClient, current: StoredToken
                        ) -> StoredToken:
    """A new access token (and, where the provider rotates, a new refresh token)."""
    if not current.refresh_token:
        raise GrantRefused(f"{app.provider} refresh: no refresh token is stored")
    fields, headers = _client_fields(app, pkce=app.spec.pkce)
    fields.update({"grant_type": "refresh_token", "refresh_token": current.refresh_token})
    response = await _post(app, http, "token refresh", app.token_url, fields,
                           body=app.dialect.body, headers=headers)
    token, _ = _token(app, response, "token refresh", previous=current)
    return token


async def fetch_metadata(app: OAuthApp, http: httpx.AsyncClient, token: StoredToken
                         ) -> dict[str, str]:
    """Mailchimp's account metadata: the data-centre prefix and API endpoint."""
    if app.metadata_url is None:
        return {}
    try:
        response = await http.get(app.metadata_url,
                                  headers={"Authorization": f"OAuth {token.access_token}"})
    except httpx.HTTPError as exc:
        raise GrantUnavailable(f"{app.provider} metadata: cannot reach the provider "
                               f"({type(exc).__name__})") from None
    if response.status_code != 200:
        raise GrantRefused(f"{app.provider} metadata refused: HTTP {response.status_code}")
    body = response.json()
    facts = {"dc": str(body.get("dc") or "")}
    if body.get("api_endpoint"):
        facts["api_endpoint"] = str(body["api_endpoint"])
    if body.get("user_id") is not None:
        facts["account"] = str(body["user_id"])
    return {k: v for k, v in facts.items() if v}


async def revoke(app: OAuthApp, http: httpx.AsyncClient, token: StoredToken) -> bool:
    """Revoke the grant at the provider; False when it offers no revoke endpoint."""
    kind = app.dialect.revoke
    if app.revoke_url is None or kind == "none":
        return False
    headers = {"Accept": "application/json"}
    body = "form"
    fields: dict[str, str]
    if kind == "square":
        headers["Authorization"] = f"Client {app.client_secret or ''}"
        fields, body = {"client_id": app.client_id, "access_token": token.access_token}, "json"
    elif kind == "intuit":
        headers["Authorization"] = _basic(app)
        fields = {"token": token.refresh_token or token.access_token}
        body = "json"
    elif kind == "stripe":
        fields = {"client_id": app.client_id, "stripe_user_id": token.account.get("account", "")}
        if app.client_secret:
            fields["client_secret"] = app.client_secret
    else:
        fields = {"token": token.refresh_token or token.access_token,
                  "client_id": app.client_id}
        if app.client_secret:
            fields["client_secret"] = app.client_secret
    await _post(app, http, "revoke", app.revoke_url, fields, body=body, headers=headers)
    return True
