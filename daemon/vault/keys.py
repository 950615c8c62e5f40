"""Key-encryption keys: parsing, generating and the local key provider.

A key is written ``VERSION:KEY``: a positive whole number and 32 random bytes in URL-safe
base64, as ``syncd keys generate`` prints it. ``SYNCD_ENCRYPTION_KEYS`` holds one or more,
separated by commas or white space; ``SYNCD_ENCRYPTION_KEY_FILES`` names files holding more,
one a line. The highest version seals new values; every configured version opens old ones.

A key's bytes never appear in a message, ``repr`` or log: errors name the setting or file
and the entry's position.
"""

from __future__ import annotations

import base64
import os
import secrets
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from daemon.errors import SyncdError
from daemon.logs import get_logger
from daemon.settings import Settings

__all__ = [
    "KEY_BYTES",
    "KeyProvider",
    "LocalKeyProvider",
    "NoEncryptionKey",
    "VaultError",
    "embedded_key_file",
    "format_key",
    "generate_key",
    "parse_keys",
    "write_key_file",
]

log = get_logger("syncd.vault")

KEY_BYTES = 32
_NONCE_BYTES = 12


class VaultError(SyncdError):
    """A value could not be sealed or opened. The message never holds key or secret bytes."""


class NoEncryptionKey(VaultError):
    """No key is configured, so nothing secret can be stored or read."""


def generate_key() -> bytes:
    """32 bytes from the operating system's CSPRNG."""
    return secrets.token_bytes(KEY_BYTES)


def format_key(version: int, key: bytes) -> str:
    """``VERSION:KEY`` as the settings take it."""
    return f"{version}:{base64.urlsafe_b64encode(key).decode('ascii')}"


def parse_keys(text: str, *, source: str) -> dict[int, bytes]:
    """``{version: key}`` from ``VERSION:KEY`` entries; ``source`` names where they came from."""
    keys: dict[int, bytes] = {}
    entries = [e for e in text.replace(",", " ").split() if e and not e.startswith("#")]
    for position, entry in enumerate(entries, start=1):
        version_text, sep, encoded = entry.partition(":")
        if not sep or not version_text.isdigit() or int(version_text) < 1:
            raise VaultError(f"{source}: entry {position} is not VERSION:KEY "
                             "(a whole number >= 1, a colon, then the key)")
        version = int(version_text)
        try:
            key = base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4))
        except ValueError:
            key = b""
        if len(key) != KEY_BYTES:
            raise VaultError(f"{source}: key version {version} is not {KEY_BYTES} bytes of "
                             "base64 (make one with `syncd keys generate`)")
        if version in keys:
            raise VaultError(f"{source}: key version {version} is given twice")
        keys[version] = key
    return keys


def embedded_key_file(settings: Settings) -> Path:
    """Where the embedded (demo) mode keeps the key it creates: beside its data directory."""
    return settings.data_dir.parent / "syncd-vault.key"


class KeyProvider:
    """What the vault needs from a key service: wrap and unwrap data keys by key version.

    A KMS plugin returns its own from the ``syncd_key_provider`` hook; it only has to
    implement these four members. ``context`` is the associated data of the value the data
    key seals; a provider must refuse to unwrap under a different context.
    """

    name: str = "abstract"

    @property
    def versions(self) -> Sequence[int]:
        """Every key version that can unwrap, newest last."""
        raise NotImplementedError

    @property
    def current_version(self) -> int:
        """The version new values are sealed with."""
        raise NotImplementedError

    async def wrap(self, version: int, data_key: bytes, context: bytes) -> bytes:
        """``data_key`` encrypted under key ``version``, bound to ``context``."""
        raise NotImplementedError

    async def unwrap(self, version: int, wrapped: bytes, context: bytes) -> bytes:
        """The data key; :class:`VaultError` when it does not authenticate."""
        raise NotImplementedError


@dataclass(frozen=True, slots=True, repr=False)
class LocalKeyProvider(KeyProvider):
    """Keys held in settings or key files (the default provider)."""

    keys: Mapping[int, bytes] = field(default_factory=dict)
    name: str = "local"

    def __repr__(self) -> str:
        return f"LocalKeyProvider(versions={list(self.versions)})"

    @property
    def versions(self) -> Sequence[int]:
        return sorted(self.keys)

    @property
    def current_version(self) -> int:
        return max(self.keys)

    def _key(self, version: int) -> bytes:
        try:
            return self.keys[version]
        except KeyError:
            raise VaultError(f"encryption key version {version} is not configured "
                             f"(configured: {', '.join(map(str, self.versions))})") from None

    async def wrap(self, version: int, data_key: bytes, context: bytes) -> bytes:
        nonce = secrets.token_bytes(_NONCE_BYTES)
        return nonce + AESGCM(self._key(version)).encrypt(nonce, data_key, context)

    async def unwrap(self, version: int, wrapped: bytes, context: bytes) -> bytes:
        key = self._key(version)
        try:
            return AESGCM(key).decrypt(wrapped[:_NONCE_BYTES], wrapped[_NONCE_BYTES:], context)
        except (InvalidTag, ValueError):
            raise VaultError("a stored secret does not authenticate: it was altered, copied "
                             "from another row, or sealed with a different key") from None

    @classmethod
    def from_settings(cls, settings: Settings, *, create: bool | None = None
                      ) -> LocalKeyProvider:
        """Keys from ``SYNCD_ENCRYPTION_KEYS`` and ``SYNCD_ENCRYPTION_KEY_FILES``.

        With neither set, the embedded mode (no database URL) uses the key file beside its
        data directory, creating it with mode 0600 (and saying where) unless ``create`` is
        False; any other set-up refuses. ``create=True`` creates it in any mode.
        """
        keys: dict[int, bytes] = {}
        if settings.encryption_keys is not None:
            keys.update(parse_keys(settings.encryption_keys.get_secret_value(),
                                   source="SYNCD_ENCRYPTION_KEYS"))
        for path in settings.encryption_key_files:
            _merge(keys, _read_key_file(path), source=str(path))
        if not keys:
            embedded = settings.database_url is None
            path = embedded_key_file(settings)
            usable = embedded and (create is not False or path.exists())
            if usable or create:
                _merge(keys, _load_or_create(path), source=str(path))
            else:
                raise NoEncryptionKey(
                    "no encryption key configured: set SYNCD_ENCRYPTION_KEYS (make one with "
                    "`syncd keys generate`) or SYNCD_ENCRYPTION_KEY_FILES")
        return cls(keys)


def _merge(into: dict[int, bytes], more: Mapping[int, bytes], *, source: str) -> None:
    for version, key in more.items():
        if version in into and into[version] != key:
            raise VaultError(f"{source}: key version {version} differs from the one "
                             "configured elsewhere")
        into[version] = key


def _read_key_file(path: Path) -> dict[int, bytes]:
    try:
        text = path.expanduser().read_text(encoding="utf-8")
    except OSError as exc:
        raise VaultError(f"encryption key file {path} cannot be read: "
                         f"{exc.strerror or type(exc).__name__}") from None
    keys = parse_keys(text, source=f"encryption key file {path}")
    if not keys:
        raise VaultError(f"encryption key file {path} holds no key")
    return keys


def write_key_file(path: Path, entries: Iterable[tuple[int, bytes]]) -> None:
    """Create ``path`` with mode 0600 holding ``entries``; refuses to overwrite."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise VaultError(f"{path} exists; not overwriting a key file") from None
    except OSError as exc:
        raise VaultError(f"cannot create {path}: {exc.strerror}") from None
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        for version, key in entries:
            out.write(format_key(version, key) + "\n")


def _load_or_create(path: Path) -> dict[int, bytes]:
    if path.exists():
        return _read_key_file(path)
    try:
        write_key_file(path, [(1, generate_key())])
    except VaultError:
        if not path.exists():  # another process may have won the race
            raise
    else:
        log.warning("vault.key_created", path=str(path), mode="0600",
                    hint="embedded mode only; set SYNCD_ENCRYPTION_KEYS in production")
    return _read_key_file(path)
