"""Where a credential reference may point, and reading it from there.

A venue file names its secrets by reference (``env:NAME``, ``file:PATH``); without a scope
it could name any environment variable or any file the daemon can read (its own database
URL, ``/proc/self/environ``, ``/dev/zero``). A :class:`CredentialScope` allows environment
variables whose names start with one of a few prefixes (``SYNCD_CREDENTIAL_ENV_PREFIXES``)
and regular files inside one secrets directory (``SYNCD_SECRETS_DIR``), read up to a size
cap. syncd's own settings (``SYNCD_*``, ``DATABASE_URL``) are never credentials, whatever
the prefixes say.

The same checks serve ``syncd validate`` (:meth:`CredentialScope.problem`, which needs no
secret to exist) and the credential store (:meth:`CredentialScope.read`). Messages name the
reference, never a value.
"""

from __future__ import annotations

import contextlib
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from daemon.errors import SyncdError

__all__ = [
    "DEFAULT_SCOPE",
    "MAX_SECRET_BYTES",
    "OPERATOR_SCOPE",
    "CredentialError",
    "CredentialScope",
]

#: The largest secret file read (a key, a token, a small JSON key file).
MAX_SECRET_BYTES = 65_536
_RESERVED_PREFIX = "SYNCD_"
_RESERVED_NAMES = frozenset({"DATABASE_URL"})


class CredentialError(SyncdError):
    """A credential could not be resolved. The message names the reference, never a value."""


@dataclass(frozen=True, slots=True)
class CredentialScope:
    """Environment-variable prefixes and the secrets directory references may use."""

    env_prefixes: tuple[str, ...] = ("VENUE_",)
    secrets_dir: Path = Path("/run/secrets")
    max_bytes: int = MAX_SECRET_BYTES
    #: syncd's own secret files (the vault's key files): never a credential, even when
    #: they lie inside the secrets directory.
    reserved_files: tuple[Path, ...] = ()

    @classmethod
    def from_settings(cls, settings: Any) -> CredentialScope:
        """The scope the settings give (:class:`daemon.settings.Settings`)."""
        return cls(env_prefixes=tuple(settings.credential_env_prefixes),
                   secrets_dir=Path(settings.secrets_dir),
                   reserved_files=tuple(Path(p) for p in settings.encryption_key_files))

    # --- checks without reading --------------------------------------------------------

    def env_problem(self, name: str) -> str | None:
        """Why ``env:name`` is refused, or None."""
        if name.startswith(_RESERVED_PREFIX) or name in _RESERVED_NAMES:
            return f"environment variable {name} is one of syncd's own settings"
        if not any(name.startswith(p) for p in self.env_prefixes):
            allowed = ", ".join(f"{p}*" for p in self.env_prefixes) or "none"
            return (f"environment variable {name} is outside the allowed prefixes "
                    f"({allowed})")
        return None

    def _lexical(self, target: str) -> Path:
        return Path(os.path.normpath(self.secrets_dir / target))

    def _inside(self, path: Path, base: Path) -> bool:
        return path == base or path.is_relative_to(base)

    def _reserved(self, *paths: Path) -> bool:
        """Whether any of ``paths`` is one of syncd's own secret files."""
        mine: set[Path] = set()
        for reserved in self.reserved_files:
            mine.add(Path(os.path.normpath(reserved)))
            with contextlib.suppress(OSError, RuntimeError):
                mine.add(reserved.resolve(strict=True))
        return any(path in mine for path in paths)

    def file_problem(self, target: str) -> str | None:
        """Why ``file:target`` is refused, or None. A file that does not exist (yet) is not
        a problem here; one that exists is followed through its symlinks."""
        path = self._lexical(target)
        base = Path(os.path.normpath(self.secrets_dir))
        if not self._inside(path, base) or path == base:
            return f"{target} is outside the secrets directory {self.secrets_dir}"
        if self._reserved(path):
            return f"{target} is one of syncd's own key files"
        if os.path.lexists(path):
            try:
                real = path.resolve(strict=True)
            except (OSError, RuntimeError):
                return None  # a dangling link: reported when it is read
            if not self._inside(real, self.secrets_dir.resolve()):
                return f"{target} leads outside the secrets directory {self.secrets_dir}"
            if self._reserved(real):
                return f"{target} is one of syncd's own key files"
        return None

    def problem(self, reference: str) -> str | None:
        """Why a reference (``env:NAME``, ``file:PATH``) is out of scope, or None."""
        kind, _, target = reference.partition(":")
        if kind == "env":
            return self.env_problem(target)
        if kind == "file":
            return self.file_problem(target)
        return None

    # --- reading -----------------------------------------------------------------------

    def read_env(self, key: str, name: str) -> str:
        refused = self.env_problem(name)
        if refused is not None:
            raise CredentialError(f"credential {key!r} is refused: {refused} "
                                  "(see SYNCD_CREDENTIAL_ENV_PREFIXES)")
        value = os.environ.get(name)
        if value is None or not value.strip():
            raise CredentialError(
                f"credential {key!r} refers to environment variable {name}, which is unset")
        if len(value.encode()) > self.max_bytes:
            raise CredentialError(f"credential {key!r} in environment variable {name} is "
                                  f"larger than {self.max_bytes} bytes")
        return value.strip()

    def read_file(self, key: str, target: str) -> str:
        refused = self.file_problem(target)
        if refused is not None:
            raise CredentialError(f"credential {key!r} is refused: {refused} "
                                  "(see SYNCD_SECRETS_DIR)")
        path = self._lexical(target)
        try:
            real = path.resolve(strict=True)
            if not self._inside(real, self.secrets_dir.resolve(strict=True)):
                raise CredentialError(f"credential {key!r} is refused: {target} leads "
                                      f"outside the secrets directory {self.secrets_dir}")
            if self._reserved(real):
                raise CredentialError(f"credential {key!r} is refused: {target} is one of "
                                      "syncd's own key files")
            # No following a link swapped in since, no blocking on a FIFO.
            fd = os.open(real, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError as exc:
            raise CredentialError(
                f"credential {key!r} refers to {path}, which cannot be read: "
                f"{exc.strerror or type(exc).__name__}") from None
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise CredentialError(
                    f"credential {key!r} refers to {path}, which is not a regular file")
            data = b""
            while len(data) <= self.max_bytes:
                chunk = os.read(fd, self.max_bytes + 1 - len(data))
                if not chunk:
                    break
                data += chunk
        finally:
            os.close(fd)
        if len(data) > self.max_bytes:
            raise CredentialError(f"credential {key!r} refers to {path}, which is larger "
                                  f"than {self.max_bytes} bytes")
        try:
            text = data.decode("utf-8").strip()
        except UnicodeDecodeError:
            raise CredentialError(
                f"credential {key!r} refers to {path}, which is not UTF-8 text") from None
        if not text:
            raise CredentialError(f"credential {key!r} refers to {path}, which is empty")
        return text

    def read(self, key: str, reference: str) -> str:
        """The secret a reference points at. ``key`` names it in errors."""
        kind, sep, target = reference.partition(":")
        if not sep or not target:
            raise CredentialError(f"credential {key!r} must be a reference (env:NAME or "
                                  "file:PATH), not a value")
        if kind == "env":
            return self.read_env(key, target)
        if kind == "file":
            return self.read_file(key, target)
        raise CredentialError(
            f"credential {key!r} has an unknown reference kind {kind!r} (use env: or file:)")


DEFAULT_SCOPE = CredentialScope()
#: For references in syncd's own settings (an OAuth app's client secret): the operator sets
#: those, so any environment variable but syncd's own and any regular file may be named; the
#: size cap and the regular-file rule still hold. Venue files never get this scope.
OPERATOR_SCOPE = CredentialScope(env_prefixes=("",), secrets_dir=Path("/"))
