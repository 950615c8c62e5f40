"""Credential references: resolved from env and files, never shown."""

from __future__ import annotations

from pathlib import Path

import pytest
from structlog.testing import capture_logs

from daemon.credentials import CredentialError, StaticTokens, resolve_reference
from daemon.provider import Credentials


def test_env_and_file_references_resolve(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                         ) -> None:
    monkeypatch.setenv("SQ_KEY", "sk-123")
    assert resolve_reference("api_key", "env:SQ_KEY") == "sk-123"
    secret = tmp_path / "key"
    secret.write_text("sk-456\n")
    assert resolve_reference("api_key", f"file:{secret}") == "sk-456"


@pytest.mark.parametrize(("reference", "message"), [
    ("sk-live-abc", "must be a reference"),
    ("env:NOT_SET_ANYWHERE", "is unset"),
    ("file:/nonexistent/key", "cannot be read"),
    ("vault:x", "unknown reference kind"),
])
def test_bad_references_name_the_key_not_the_value(reference: str, message: str) -> None:
    with pytest.raises(CredentialError, match=message) as info:
        resolve_reference("api_key", reference)
    assert "api_key" in str(info.value)
    if reference == "sk-live-abc":
        assert "sk-live-abc" not in str(info.value)


def test_credentials_repr_hides_secrets() -> None:
    creds = Credentials(access_token="tok-secret", api_key="key-secret",
                        account={"realm_id": "1"})
    assert "secret" not in repr(creds)


async def test_static_tokens_refresh_through_the_refresher() -> None:
    tokens = StaticTokens()
    assert await tokens.refresh("v", "square") is None

    async def refresher(venue_id: str, provider: str) -> Credentials:
        return Credentials(access_token="new")

    tokens.refresher = refresher
    with capture_logs() as logs:
        fresh = await tokens.refresh("v", "square")
    assert fresh is not None
    assert (await tokens.token("v", "square")) == fresh
    assert "new" not in str(logs)
