"""Credential references: resolved from env and files, never shown."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from daemon.credentials import CredentialError, CredentialScope, StaticTokens, resolve_reference
from daemon.provider import Credentials


def test_env_and_file_references_resolve(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                         ) -> None:
    scope = CredentialScope(env_prefixes=("SQ_",), secrets_dir=tmp_path)
    monkeypatch.setenv("SQ_KEY", "sk-123")
    assert resolve_reference("api_key", "env:SQ_KEY", scope) == "sk-123"
    secret = tmp_path / "key"
    secret.write_text("sk-456\n")
    assert resolve_reference("api_key", f"file:{secret}", scope) == "sk-456"
    assert resolve_reference("api_key", "file:key", scope) == "sk-456"


@pytest.mark.parametrize(("reference", "message"), [
    ("sk-live-abc", "must be a reference"),
    ("env:VENUE_NOT_SET_ANYWHERE", "is unset"),
    ("file:/run/secrets/nonexistent/key", "cannot be read"),
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


@pytest.mark.parametrize(("reference", "message"), [
    ("env:HOME", "outside the allowed prefixes (VENUE_*)"),
    ("env:SYNCD_DATABASE_URL", "one of syncd's own settings"),
    ("env:DATABASE_URL", "one of syncd's own settings"),
    ("file:/proc/self/environ", "outside the secrets directory"),
    ("file:/dev/zero", "outside the secrets directory"),
    ("file:../outside", "outside the secrets directory"),
    ("file:link-out", "leads outside the secrets directory"),
    ("file:fifo", "not a regular file"),
    ("file:big", "larger than 65536 bytes"),
    ("file:dir", "not a regular file"),
])
def test_references_outside_the_scope_are_refused_without_reading(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, reference: str, message: str) -> None:
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    (tmp_path / "outside").write_text("sk-outside")
    (secrets / "link-out").symlink_to(tmp_path / "outside")
    os.mkfifo(secrets / "fifo")  # opening it for reading would block without O_NONBLOCK
    (secrets / "big").write_bytes(b"k" * 70_000)
    (secrets / "dir").mkdir()
    monkeypatch.setenv("HOME", "sk-home")
    monkeypatch.setenv("SYNCD_DATABASE_URL", "postgresql://u:pw@h/d")
    monkeypatch.setenv("DATABASE_URL", "postgresql://u:pw@h/d")
    # Even a prefix that covers syncd's own settings does not make them credentials.
    scope = CredentialScope(env_prefixes=("VENUE_", "SYNCD_", "DATABASE"), secrets_dir=secrets)
    if reference == "env:HOME":
        scope = CredentialScope(secrets_dir=secrets)
    with pytest.raises(CredentialError, match=re.escape(message)) as info:
        resolve_reference("api_key", reference, scope)
    assert "sk-" not in str(info.value)
    assert "pw@" not in str(info.value)


def test_a_symlink_inside_the_secrets_directory_is_followed(tmp_path: Path) -> None:
    """Kubernetes mounts secrets as links into a ``..data`` directory beside them."""
    secrets = tmp_path / "secrets"
    (secrets / "..2024_01_01").mkdir(parents=True)
    (secrets / "..2024_01_01" / "key").write_text("sk-mounted\n")
    (secrets / "..data").symlink_to("..2024_01_01")
    (secrets / "key").symlink_to("..data/key")
    scope = CredentialScope(secrets_dir=secrets)
    assert resolve_reference("api_key", "file:key", scope) == "sk-mounted"
    assert scope.problem(f"file:{secrets}/key") is None


def test_the_vault_key_files_are_never_a_credential(tmp_path: Path) -> None:
    """A venue file cannot name the vault's keys, even when they lie in the secrets
    directory (Docker and Kubernetes mount every secret there)."""
    from daemon.settings import Settings

    secrets = tmp_path / "secrets"
    secrets.mkdir()
    keys = secrets / "syncd-keys"
    keys.write_text("1:vault-key-material\n")
    (secrets / "alias").symlink_to("syncd-keys")
    (secrets / "venue-key").write_text("sk-venue\n")
    scope = CredentialScope.from_settings(Settings(
        _env_file=None, secrets_dir=secrets, encryption_key_files=[keys]))
    for reference in ("file:syncd-keys", f"file:{keys}", "file:alias", "file:./syncd-keys"):
        assert scope.problem(reference) == (
            f"{reference.removeprefix('file:')} is one of syncd's own key files")
        with pytest.raises(CredentialError, match="one of syncd's own key files") as info:
            resolve_reference("api_key", reference, scope)
        assert "vault-key-material" not in str(info.value)
    assert resolve_reference("api_key", "file:venue-key", scope) == "sk-venue"
