"""The vault's cipher and keys: sealing, binding, tampering, configuration."""

from __future__ import annotations

import asyncio
import stat
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from daemon.settings import Settings
from daemon.vault import Binding, LocalKeyProvider, NoEncryptionKey, Sealed, Vault, VaultError
from daemon.vault.keys import embedded_key_file, format_key, generate_key, parse_keys

K1, K2 = generate_key(), generate_key()
BINDING = Binding("5c9a1e3b-7d2f-4b6a-8e0c-4f1d2a3b5c67", "quickbooks", "oauth_tokens.access")
SECRET = "EAAA-the-access-token-value"


def vault(*versions: int) -> Vault:
    keys = {1: K1, 2: K2}
    return Vault(LocalKeyProvider({v: keys[v] for v in versions or (1,)}))


def run(coro):  # type: ignore[no-untyped-def]
    return asyncio.run(coro)


SEALED = run(vault(1).seal(SECRET, BINDING))


def test_round_trip_and_fresh_nonce_per_value() -> None:
    v = vault(1)
    a, b = run(v.seal(SECRET, BINDING)), run(v.seal(SECRET, BINDING))
    assert a.version == b.version == 1
    assert a.blob != b.blob
    assert SECRET.encode() not in a.blob
    assert run(v.open(a.blob, a.version, BINDING)) == SECRET


def test_newest_key_seals_and_old_keys_still_open() -> None:
    old = run(vault(1).seal(SECRET, BINDING))
    both = vault(1, 2)
    assert run(both.seal(SECRET, BINDING)).version == 2
    assert run(both.open(old.blob, 1, BINDING)) == SECRET
    resealed = run(both.reseal(old, BINDING))
    assert resealed.version == 2
    assert run(vault(2).open(resealed.blob, 2, BINDING)) == SECRET


def test_a_removed_key_is_named_in_the_error() -> None:
    with pytest.raises(VaultError, match="key version 1, which is not configured"):
        run(vault(2).open(SEALED.blob, 1, BINDING))


@settings(max_examples=300, deadline=None)
@given(position=st.integers(min_value=0), bit=st.integers(min_value=0, max_value=7))
def test_any_flipped_byte_of_the_stored_value_fails_clearly(position: int, bit: int) -> None:
    blob = bytearray(SEALED.blob)
    blob[position % len(blob)] ^= 1 << bit
    with pytest.raises(VaultError, match=r"cannot decrypt the oauth_tokens\.access") as err:
        run(vault(1).open(bytes(blob), 1, BINDING))
    assert SECRET not in str(err.value)


@settings(max_examples=200, deadline=None)
@given(field=st.sampled_from(["venue_id", "provider", "column"]),
       position=st.integers(min_value=0), bit=st.integers(min_value=0, max_value=6))
def test_any_flipped_byte_of_the_associated_data_fails(field: str, position: int,
                                                       bit: int) -> None:
    value = bytearray(getattr(BINDING, field).encode())
    value[position % len(value)] ^= 1 << bit
    other = Binding(**{**{"venue_id": BINDING.venue_id, "provider": BINDING.provider,
                          "column": BINDING.column}, field: value.decode("latin-1")})
    with pytest.raises(VaultError):
        run(vault(1).open(SEALED.blob, 1, other))


@settings(max_examples=50, deadline=None)
@given(venue=st.uuids())
def test_a_value_for_one_venue_does_not_open_for_another(venue: object) -> None:
    other = Binding(str(venue), BINDING.provider, BINDING.column)
    with pytest.raises(VaultError):
        run(vault(1).open(SEALED.blob, 1, other))


def test_a_changed_key_version_column_fails() -> None:
    with pytest.raises(VaultError):
        run(vault(1, 2).open(SEALED.blob, 2, BINDING))


def test_reprs_show_no_key_or_value() -> None:
    v = vault(1)
    text = repr(v) + repr(v.keys) + repr(Sealed(1, SEALED.blob))
    assert format_key(1, K1).split(":")[1] not in text
    assert "versions=[1]" in repr(v.keys)


def test_key_parsing_errors_never_echo_the_key() -> None:
    with pytest.raises(VaultError, match="entry 1 is not VERSION:KEY") as e1:
        parse_keys("notakey-sekrit", source="SYNCD_ENCRYPTION_KEYS")
    assert "sekrit" not in str(e1.value)
    with pytest.raises(VaultError, match="key version 3 is not 32 bytes") as e2:
        parse_keys("3:c2Vrcml0", source="SYNCD_ENCRYPTION_KEYS")
    assert "c2Vrcml0" not in str(e2.value)
    with pytest.raises(VaultError, match="given twice"):
        parse_keys(f"{format_key(1, K1)},{format_key(1, K2)}", source="x")
    assert parse_keys(f"{format_key(2, K2)}, {format_key(1, K1)}", source="x") == {1: K1, 2: K2}


def test_no_key_with_a_database_url_refuses(tmp_path: Path) -> None:
    s = Settings(_env_file=None, database_url="postgresql://h/d", data_dir=tmp_path / "pg")
    with pytest.raises(NoEncryptionKey, match="no encryption key configured: set "
                                              "SYNCD_ENCRYPTION_KEYS"):
        LocalKeyProvider.from_settings(s)
    assert not embedded_key_file(s).exists()


def test_embedded_mode_creates_a_private_key_file_once(tmp_path: Path) -> None:
    s = Settings(_env_file=None, data_dir=tmp_path / "pg")
    first = LocalKeyProvider.from_settings(s)
    path = embedded_key_file(s)
    assert path.exists()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert LocalKeyProvider.from_settings(s).keys == first.keys


def test_keys_from_settings_and_files_combine(tmp_path: Path) -> None:
    keyfile = tmp_path / "keys"
    keyfile.write_text(format_key(2, K2) + "\n")
    s = Settings(_env_file=None, database_url="postgresql://h/d",
                 encryption_keys=format_key(1, K1), encryption_key_files=[keyfile])
    provider = LocalKeyProvider.from_settings(s)
    assert provider.versions == [1, 2]
    assert provider.current_version == 2
    missing = Settings(_env_file=None, database_url="postgresql://h/d",
                       encryption_key_files=[tmp_path / "absent"])
    with pytest.raises(VaultError, match="cannot be read"):
        LocalKeyProvider.from_settings(missing)


def test_readers_use_but_never_create_the_embedded_key_file(tmp_path: Path) -> None:
    s = Settings(_env_file=None, data_dir=tmp_path / "pg")
    with pytest.raises(NoEncryptionKey):
        LocalKeyProvider.from_settings(s, create=False)
    assert not embedded_key_file(s).exists()
    created = LocalKeyProvider.from_settings(s)
    assert LocalKeyProvider.from_settings(s, create=False).keys == created.keys
