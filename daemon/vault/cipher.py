"""Sealing and opening secret values: AES-256-GCM with envelope encryption.

Each value gets a fresh 256-bit data key and a fresh 96-bit nonce. The data key is wrapped
by the key provider under the current key version; the value's associated data names the
venue, provider and column it belongs to (and the key version), so a ciphertext copied to
another row, another venue or another column does not open, and neither does one whose
stored key version was changed.

Layout of a sealed value (bytes)::

    0x01 | version (4, big-endian) | wrapped length (2) | wrapped data key | nonce (12) | ct+tag
"""

from __future__ import annotations

import secrets
import struct
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from daemon.vault.keys import KEY_BYTES, KeyProvider, VaultError

__all__ = ["Binding", "Sealed", "Vault"]

_FORMAT = 1
_HEADER = struct.Struct(">BIH")
_NONCE_BYTES = 12


@dataclass(frozen=True, slots=True)
class Binding:
    """Where a sealed value lives: its venue, provider and column (with any row detail)."""

    venue_id: str
    provider: str
    column: str

    def context(self, version: int) -> bytes:
        parts = ("syncd.vault.v1", str(self.venue_id), self.provider, self.column, str(version))
        return "\x00".join(parts).encode("utf-8")

    def describe(self) -> str:
        return f"{self.column} of the {self.provider} integration of venue {self.venue_id}"


@dataclass(frozen=True, slots=True)
class Sealed:
    """A sealed value and the key version that sealed it (stored side by side)."""

    version: int
    blob: bytes = b""

    def __repr__(self) -> str:
        return f"Sealed(version={self.version}, bytes={len(self.blob)})"


class Vault:
    """Seals and opens values through a :class:`KeyProvider`."""

    def __init__(self, keys: KeyProvider) -> None:
        self.keys = keys

    def __repr__(self) -> str:
        return f"Vault(provider={self.keys.name!r}, current={self.keys.current_version})"

    async def seal(self, plaintext: str, binding: Binding) -> Sealed:
        version = self.keys.current_version
        context = binding.context(version)
        data_key = secrets.token_bytes(KEY_BYTES)
        wrapped = await self.keys.wrap(version, data_key, context)
        nonce = secrets.token_bytes(_NONCE_BYTES)
        body = AESGCM(data_key).encrypt(nonce, plaintext.encode("utf-8"), context)
        header = _HEADER.pack(_FORMAT, version, len(wrapped))
        return Sealed(version, header + wrapped + nonce + body)

    async def open(self, blob: bytes, version: int, binding: Binding) -> str:
        """The plaintext; :class:`VaultError` (naming the binding, never a value) otherwise."""
        failure = VaultError(f"cannot decrypt the {binding.describe()}: it was altered, copied "
                             "from another row, or sealed with a key that is not configured")
        if len(blob) < _HEADER.size:
            raise failure
        fmt, stored_version, wrapped_len = _HEADER.unpack_from(blob)
        if fmt != _FORMAT or stored_version != version:
            raise failure
        start = _HEADER.size
        wrapped = blob[start:start + wrapped_len]
        nonce = blob[start + wrapped_len:start + wrapped_len + _NONCE_BYTES]
        body = blob[start + wrapped_len + _NONCE_BYTES:]
        if len(wrapped) != wrapped_len or len(nonce) != _NONCE_BYTES or not body:
            raise failure
        if version not in self.keys.versions:
            raise VaultError(f"cannot decrypt the {binding.describe()}: it was sealed with key "
                             f"version {version}, which is not configured")
        context = binding.context(version)
        try:
            data_key = await self.keys.unwrap(version, wrapped, context)
            plain = AESGCM(data_key).decrypt(nonce, body, context)
        except (VaultError, InvalidTag, ValueError):
            raise failure from None
        return plain.decode("utf-8")

    async def reseal(self, sealed: Sealed, binding: Binding) -> Sealed:
        """``sealed`` re-encrypted under the current key version."""
        return await self.seal(await self.open(sealed.blob, sealed.version, binding), binding)
