"""Hook specifications: the extension points a syncd plugin implements.

A plugin is a module (or object) with functions marked ``@hookimpl``::

    from daemon import hookimpl

    @hookimpl
    def syncd_register_providers():
        return [MyProvider()]

and is registered under the entry-point group ``syncd.plugins`` in its distribution's
metadata. pluggy is synchronous: hooks that do I/O return awaitables, which syncd awaits
(see :func:`daemon.plugins.await_me_maybe`).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import pluggy
from pydantic import BaseModel

from daemon import PROJECT
from daemon.provider import InboundDelivery, InboundWrite, Provider

if TYPE_CHECKING:
    from daemon.settings import Settings
    from daemon.vault.keys import KeyProvider

__all__ = ["hookspec"]

hookspec = pluggy.HookspecMarker(PROJECT)


# --- registration ---------------------------------------------------------------------------


@hookspec
def syncd_register_providers() -> Sequence[Provider]:
    """Providers this plugin contributes.

    :returns: provider objects satisfying :class:`daemon.provider.Provider`; their ``name``
        must be unique across all loaded plugins.
    """
    raise NotImplementedError  # a specification: plugins provide the body


@hookspec(firstresult=True)
def syncd_provider_options_model(provider: str) -> type[BaseModel] | None:
    """The pydantic model that validates a provider's ``options:`` in venue YAML.

    First result wins: the plugin owning ``provider`` answers, others return None.
    syncd answers by default from :meth:`Provider.options_model`.

    :param provider: the provider name as written in config.
    :returns: a pydantic model class, or None if this plugin does not own the provider.
    """
    raise NotImplementedError  # a specification: plugins provide the body


# --- command line ---------------------------------------------------------------------------


@hookspec
def syncd_register_commands(subparsers: argparse._SubParsersAction[Any]) -> None:
    """Add sub-commands to the ``syncd`` command line.

    :param subparsers: the ``add_subparsers()`` object of the top-level parser. A command
        sets ``func`` with ``set_defaults(func=...)``; it receives the parsed namespace and
        returns an exit status (or an awaitable of one).
    :returns: nothing; the parser is changed in place.
    """


# --- secrets --------------------------------------------------------------------------------


@hookspec(firstresult=True)
def syncd_key_provider(settings: Settings) -> KeyProvider | None:
    """The key provider that wraps and unwraps the vault's data keys (envelope encryption).

    First result wins: a KMS plugin returns its :class:`daemon.vault.KeyProvider`; syncd's
    own default answers last with the local keys of ``SYNCD_ENCRYPTION_KEYS`` and
    ``SYNCD_ENCRYPTION_KEY_FILES``.

    :param settings: syncd's settings, for plugins that read their own from the environment.
    :returns: a key provider, or None to let the next plugin (finally the local one) answer.
    """
    raise NotImplementedError  # a specification: plugins provide the body


# --- integration lifecycle ------------------------------------------------------------------


@hookspec
def syncd_integration_failed(venue_id: str, provider: str, reason: str) -> None:
    """An integration went to ``error`` for good (its credentials cannot be refreshed).

    Called once per failure after the status was written; syncd's default only logs it. A
    plugin may send mail or a chat message. ``reason`` never holds a secret.

    :param venue_id: the venue's id.
    :param provider: the provider name.
    :param reason: one line saying what failed, as stored in the integration's last error.
    :returns: nothing (an awaitable is awaited).
    """


# --- inbound changes ------------------------------------------------------------------------


@hookspec(firstresult=True)
def syncd_inbound_change(write: InboundWrite) -> InboundDelivery | None:
    """Deliver a provider change to the platform, instead of syncd's table writer.

    Called once per inbound change syncd decided to apply (allowed columns only, values
    transformed, conflict policy applied). First result wins: a plugin that delivers to the
    platform's API returns an :class:`~daemon.provider.InboundDelivery` (or an awaitable of
    one); None lets the next plugin, and finally syncd's default sink (an ``UPDATE`` of the
    platform's table through the source's table and column names), deliver it. An exception
    is a failed delivery: the change is retried, then dead-lettered.

    :param write: the platform record (entity type, local id), its new field values, when
        the change happened at the provider, and the change time syncd read.
    :returns: the delivery's outcome, or None to leave it to the default sink.
    """
    raise NotImplementedError  # a specification: plugins provide the body
