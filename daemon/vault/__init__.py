"""The token vault: secrets sealed with AES-256-GCM under versioned, rotatable keys.

Plugin authors writing a KMS key provider import :class:`KeyProvider` and
:class:`VaultError` from here; see ``docs/credentials.md``.
"""

from __future__ import annotations

from daemon.vault.cipher import Binding, Sealed, Vault
from daemon.vault.keys import KeyProvider, LocalKeyProvider, NoEncryptionKey, VaultError

__all__ = [
    "Binding",
    "KeyProvider",
    "LocalKeyProvider",
    "NoEncryptionKey",
    "Sealed",
    "Vault",
    "VaultError",
]
