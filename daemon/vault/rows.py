"""Where each sealed column lives, as :class:`~daemon.vault.cipher.Binding` values.

One place names the associated data of every column, so the stores and the rotation agree.
"""

from __future__ import annotations

from daemon.vault.cipher import Binding

__all__ = ["access_token", "api_key", "api_secret", "code_verifier", "refresh_token"]


def access_token(venue_id: str, provider: str) -> Binding:
    return Binding(str(venue_id), provider, "oauth_tokens.access_token")


def refresh_token(venue_id: str, provider: str) -> Binding:
    return Binding(str(venue_id), provider, "oauth_tokens.refresh_token")


def api_key(venue_id: str, provider: str, environment: str, key_name: str) -> Binding:
    return Binding(str(venue_id), provider,
                   f"venue_api_keys.api_key.{environment}.{key_name}")


def api_secret(venue_id: str, provider: str, environment: str, key_name: str) -> Binding:
    return Binding(str(venue_id), provider,
                   f"venue_api_keys.api_secret.{environment}.{key_name}")


def code_verifier(venue_id: str, provider: str, state: str) -> Binding:
    # The state is a public value; binding to it stops a verifier moving between requests.
    return Binding(str(venue_id), provider, f"oauth_states.code_verifier.{state}")
