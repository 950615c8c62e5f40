"""What each venue file declared when it was last applied, and when that still holds.

``syncd apply`` records, for every venue file, the sha256 of its bytes, a fingerprint of
everything its checks depended on (:func:`dependencies`), its venue id, and for each
integration it declares a digest of the row as the database holds it right after the apply
(``config_files``, migration 0013). A later load given that record skips parsing and
checking a file whose bytes and dependencies are the same: its rows are then known by their
digests only, and a plan compares each row's current digest with the recorded one. A row
that differs (drift), or is missing, has its file read and checked after all, so the plan
shows the same field-by-field change it always did.

Why this is exact: the desired rows of a file are a function of its bytes and of its
dependencies, nothing else. The dependencies are the loaded plugins (names, versions,
capabilities, options models), every template (config and plugin), the YAML limits, the
credential scope, and syncd's own checking code. A change to any of them changes the
fingerprint and every file is read again. The one check that reads the world outside the
file, where a ``file:`` credential leads (a symlink may appear in the secrets directory), is
made again for each skipped file from the references it recorded.
"""

from __future__ import annotations

import dataclasses
import enum
import hashlib
import importlib
import json
import os
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

from pydantic import BaseModel

from daemon import __version__
from daemon.config.desired import DesiredIntegration, DesiredTemplate
from daemon.config.limits import YamlLimits
from daemon.credential_scope import CredentialScope
from daemon.plugins import Plugins

__all__ = [
    "AppliedFile",
    "CheckedFile",
    "FileSources",
    "dependencies",
    "file_digest",
    "stored_name",
]

#: Raised when the meaning of a recorded entry changes (its fields, or what a digest covers).
_FORMAT = 1
#: The modules whose code decides what a venue file yields: a change to any of them (an
#: upgrade, a patch) reads every file again.
_CODE = ("daemon.config.loader", "daemon.config.models", "daemon.config._yaml",
         "daemon.config._ruamel", "daemon.config._locate", "daemon.config._located",
         "daemon.config.desired", "daemon.config.schema", "daemon.config.limits",
         "daemon.config.applied", "daemon.mapping", "daemon.credential_scope",
         "daemon.provider", "daemon.inbound.rules", "daemon.inbound.fields")


@dataclass(frozen=True, slots=True)
class AppliedFile:
    """A venue file as the last apply recorded it."""

    #: sha256 of the file's bytes.
    digest: str
    #: Fingerprint of what its checks depended on (:func:`dependencies`).
    deps: str
    venue_id: UUID
    #: provider -> md5 of the row's config columns as applied (``record_files``, SQL).
    rows: Mapping[str, str]
    #: Providers marked ``removed: true``.
    removed: tuple[str, ...] = ()
    #: ``file:`` credential references, checked again against the secrets directory.
    secret_files: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class CheckedFile:
    """A venue file read and checked in this load (its row digests are not known yet)."""

    digest: str
    venue_id: UUID
    #: Providers of the integrations it declares (rows to record), and those it removes.
    providers: tuple[str, ...]
    removed: tuple[str, ...]
    secret_files: tuple[str, ...]


@dataclass(slots=True)
class FileSources:
    """Where the venue files of one load came from: read and checked, or taken as applied.

    Files are named as in messages (``ConfigFiles``); :func:`stored_name` gives the name
    recorded in the database.
    """

    #: Fingerprint of this load's dependencies.
    deps: str
    #: Every venue file, in order.
    names: tuple[str, ...]
    #: What the database recorded when the files were loaded (None: not asked, or absent).
    stored: Mapping[str, AppliedFile] | None
    checked: dict[str, CheckedFile] = field(default_factory=dict)
    skipped: dict[str, AppliedFile] = field(default_factory=dict)
    #: (venue id, provider) -> (recorded row digest, file) of the skipped files' rows.
    assumed: dict[tuple[UUID, str], tuple[str, str]] = field(default_factory=dict)
    #: Reads and checks skipped files after all: their desired rows.
    expand: Callable[[Collection[str]], list[DesiredIntegration]] = field(
        default=lambda names: [], repr=False)


def stored_name(name: str) -> str:
    """The name a venue file is recorded under: ``venues/<file name>``, whatever the root."""
    return f"venues/{os.path.basename(name)}"


def file_digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _plain(value: Any) -> Any:
    """``value`` as JSON-ready data, the same in every process (sets sorted)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, (set, frozenset)):
        return sorted(json.dumps(v, sort_keys=True, default=_plain) for v in value)
    if isinstance(value, Mapping):
        return {str(k): v for k, v in value.items()}
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, type) and issubclass(value, BaseModel):
        return value.model_json_schema()
    return f"{type(value).__module__}.{type(value).__qualname__}"


def _code_digest() -> str:
    digest = hashlib.sha256()
    for name in _CODE:
        module = importlib.import_module(name)
        try:
            digest.update(Path(module.__file__ or "").read_bytes())
        except OSError:
            digest.update(name.encode())  # no source to read: the version below decides
    return digest.hexdigest()


def dependencies(plugins: Plugins, templates: Iterable[DesiredTemplate], limits: YamlLimits,
                 scope: CredentialScope | None, writable: Iterable[str] = ()) -> str:
    """A fingerprint of everything a venue file's checks depend on besides its bytes
    (``writable``: the platform columns inbound mappings may write)."""
    providers = {
        name: {"plugin": plugins.provider_plugin.get(name),
               "capabilities": provider.capabilities,
               "options": plugins.options_model(name)}
        for name, provider in sorted(plugins.providers.items())}
    state = {
        "format": _FORMAT,
        "syncd": __version__,
        "code": _code_digest(),
        "plugins": sorted((i.name, i.distribution or "", i.version or "")
                          for i in plugins.loaded),
        "providers": providers,
        "templates": sorted((t.provider, t.name, t.spec_hash, t.origin.startswith("plugin:"))
                            for t in templates),
        "limits": limits,
        "writable": sorted(writable),
        "scope": None if scope is None else (scope.env_prefixes, str(scope.secrets_dir),
                                             scope.max_bytes),
    }
    text = json.dumps(state, sort_keys=True, default=_plain, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()
