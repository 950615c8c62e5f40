"""Building the inbound processor a worker uses, from the settings and loaded plugins."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import asyncpg

from daemon.inbound.fields import InboundSettings
from daemon.inbound.processor import InboundProcessor
from daemon.inbound.sink import HookSink, PlatformRecords, Sink, TableSink
from daemon.provider import Provider
from daemon.source import SourceReader, SourceSettings

__all__ = ["inbound_processor"]


def inbound_processor(pool: asyncpg.Pool, providers: Mapping[str, Provider], *,
                      source: SourceReader | None = None, hook: Any = None,
                      settings: InboundSettings | None = None) -> InboundProcessor:
    """A processor on syncd's ``pool`` writing the platform ``source`` reads (its pool and
    names; default: syncd's database with the source settings), through the plugins'
    ``syncd_inbound_change`` hook (``hook``: the plugin manager's relay) before the tables."""
    if source is None:
        source = SourceReader(pool, SourceSettings())
    records = PlatformRecords(source.pool, source.settings)
    sink: Sink = TableSink(records)
    if hook is not None:
        sink = HookSink(hook, sink)
    return InboundProcessor(pool, providers, records=records, sink=sink, source=source,
                            settings=settings)
