"""Choosing the key provider through the ``syncd_key_provider`` hook.

The local provider (keys from settings or key files) answers last, so a KMS plugin that
answers wins; both are reached the same way.
"""

from __future__ import annotations

from daemon import hookimpl
from daemon.plugins import Plugins
from daemon.settings import Settings
from daemon.vault.cipher import Vault
from daemon.vault.keys import KeyProvider, LocalKeyProvider, VaultError

__all__ = ["LocalKeyHooks", "key_provider", "load_vault"]

_PLUGIN_NAME = "syncd.vault"


class LocalKeyHooks:
    """The default ``syncd_key_provider``: keys from settings and key files.

    ``create_key`` False stops the embedded mode from creating its key file (processes that
    only read secrets, such as workers, must not invent a key nobody else has).
    """

    def __init__(self) -> None:
        self.create_key: bool | None = None

    @hookimpl(trylast=True)
    def syncd_key_provider(self, settings: Settings) -> KeyProvider | None:
        return LocalKeyProvider.from_settings(settings, create=self.create_key)


def key_provider(plugins: Plugins, settings: Settings, *, create_key: bool | None = None
                 ) -> KeyProvider:
    """The key provider the first answering plugin gives (the local one by default)."""
    hooks = plugins.pm.get_plugin(_PLUGIN_NAME)
    if not isinstance(hooks, LocalKeyHooks):
        hooks = LocalKeyHooks()
        plugins.pm.register(hooks, name=_PLUGIN_NAME)
    hooks.create_key = create_key
    found = plugins.hook.syncd_key_provider(settings=settings)
    if found is None:
        raise VaultError("no key provider answered syncd_key_provider")
    if not found.versions:
        raise VaultError(f"key provider {found.name!r} has no keys")
    return found  # type: ignore[no-any-return]


def load_vault(plugins: Plugins, settings: Settings, *, create_key: bool | None = None
               ) -> Vault:
    """The vault built on the chosen key provider."""
    return Vault(key_provider(plugins, settings, create_key=create_key))
