"""syncd's OAuth app at one provider: client, endpoints, and how the provider talks.

The endpoints come from the plugin's :class:`~daemon.provider.OAuthSpec`; an emulator or
sandbox base URL override (``SYNCD_SYNC_BASE_URLS``) replaces their scheme and host. The few
ways providers differ from RFC 6749/7009 (Square's JSON token body and ``Client`` revoke
header, Intuit's JSON revoke body, Stripe's deauthorize, Mailchimp's metadata endpoint) are
a :class:`Dialect` per provider name; a provider not listed gets the RFC behaviour.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal
from urllib.parse import urlsplit, urlunsplit

from daemon.credential_scope import OPERATOR_SCOPE
from daemon.credentials import CredentialError, resolve_reference
from daemon.errors import SyncdError
from daemon.provider import OAuthSpec, Provider
from daemon.settings import Settings

__all__ = ["Dialect", "OAuthApp", "OAuthError", "oauth_app"]


class OAuthError(SyncdError):
    """An OAuth step failed; the message is one line and never holds a token or code."""


@dataclass(frozen=True, slots=True)
class Dialect:
    """How a provider departs from the RFCs."""

    body: Literal["form", "json"] = "form"
    revoke: Literal["rfc7009", "square", "intuit", "stripe", "none"] = "rfc7009"
    #: Token-response fields kept as account facts: (response field, fact name).
    facts: tuple[tuple[str, str], ...] = ()
    #: The fact that identifies the provider account (stored as ``account_id``).
    account_fact: str | None = None
    #: Mailchimp: ask ``/oauth2/metadata`` for the data centre after the exchange.
    metadata: bool = False


_DIALECTS: dict[str, Dialect] = {
    "square": Dialect(body="json", revoke="square",
                      facts=(("merchant_id", "merchant_id"),), account_fact="merchant_id"),
    "quickbooks": Dialect(revoke="intuit", account_fact="realm_id"),
    "stripe": Dialect(revoke="stripe", facts=(("stripe_user_id", "account"),),
                      account_fact="account"),
    "mailchimp": Dialect(revoke="none", metadata=True, account_fact="account"),
}


def _snake(name: str) -> str:
    out = "".join("_" + c.lower() if c.isupper() else c for c in name)
    return out.lstrip("_")


@dataclass(frozen=True, slots=True)
class OAuthApp:
    """Everything a connect, refresh or revoke call needs for one provider."""

    provider: str
    spec: OAuthSpec
    client_id: str
    client_secret: str | None = field(repr=False)
    authorize_url: str
    token_url: str
    revoke_url: str | None
    metadata_url: str | None
    redirect_uri: str
    dialect: Dialect

    @property
    def callback_facts(self) -> tuple[tuple[str, str], ...]:
        """Callback query parameters kept as facts: QuickBooks ``realmId`` -> ``realm_id``."""
        return tuple((p, _snake(p)) for p in self.spec.callback_params)


def _rehost(url: str, base: str | None) -> str:
    if not base:
        return url
    target, over = urlsplit(url), urlsplit(base)
    return urlunsplit((over.scheme, over.netloc, target.path, target.query, ""))


def oauth_app(provider: Provider, settings: Settings, *, environment: str = "production",
              base_url: str | None = None) -> OAuthApp:
    """The OAuth app for ``provider``; :class:`OAuthError` when it has none or none is set."""
    spec = provider.capabilities.oauth
    name = provider.name
    if spec is None:
        raise OAuthError(f"{name} does not connect with OAuth")
    client = settings.oauth_clients.get(name)
    if client is None:
        raise OAuthError(f"no OAuth app configured for {name}: add its client_id and "
                         "client_secret to SYNCD_OAUTH_CLIENTS")
    secret = None
    if client.client_secret is not None:
        raw = client.client_secret.get_secret_value()
        try:
            secret = (resolve_reference(f"SYNCD_OAUTH_CLIENTS.{name}.client_secret", raw,
                                        OPERATOR_SCOPE)
                      if raw.startswith(("env:", "file:")) else raw)
        except CredentialError as exc:
            raise OAuthError(str(exc)) from None
    sandbox = environment == "sandbox"
    authorize = (spec.sandbox_authorize_url if sandbox and spec.sandbox_authorize_url
                 else spec.authorize_url)
    token = spec.sandbox_token_url if sandbox and spec.sandbox_token_url else spec.token_url
    dialect = _DIALECTS.get(name, Dialect())
    metadata = None
    if dialect.metadata:
        parts = urlsplit(token)
        metadata = urlunsplit((parts.scheme, parts.netloc, "/oauth2/metadata", "", ""))
    redirect = settings.oauth_redirect_url.rstrip("/") + f"/oauth/{name}/callback"
    return OAuthApp(
        provider=name, spec=spec, client_id=client.client_id, client_secret=secret,
        authorize_url=_rehost(authorize, base_url), token_url=_rehost(token, base_url),
        revoke_url=_rehost(spec.revoke_url, base_url) if spec.revoke_url else None,
        metadata_url=_rehost(metadata, base_url) if metadata else None,
        redirect_uri=redirect, dialect=dialect)
