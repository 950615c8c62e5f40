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
    """The default ``syncd_key_provider``: keys from settings and key files."""

    @hookimpl(trylast=True)
    def syncd_key_provider(self, settings: Settings) -> KeyProvider | None:
        return LocalKeyProvider.from_settings(settings)


def key_provider(plugins: Plugins, settings: Settings) -> KeyProvider:
    """The key provider the first answering plugin gives (the local one by default)."""
    if not plugins.pm.has_plugin(_PLUGIN_NAME):
        plugins.pm.register(LocalKeyHooks(), name=_PLUGIN_NAME)
    found = plugins.hook.syncd_key_provider(settings=settings)
    if found is None:
        raise VaultError("no key provider answered syncd_key_provider")
    if not found.versions:
        raise VaultError(f"key provider {found.name!r} has no keys")
    return found  # type: ignore[no-any-return]


def load_vault(plugins: Plugins, settings: Settings) -> Vault:
    """The vault built on the chosen key provider."""
    return Vault(key_provider(plugins, settings))
