"""The QuickBooks provider plugin for syncd."""

from __future__ import annotations

from collections.abc import Sequence

from daemon import hookimpl
from daemon.provider import Provider
from plugins.quickbooks.provider import QuickBooksProvider

__all__ = ["QuickBooksProvider", "syncd_register_providers"]


@hookimpl
def syncd_register_providers() -> Sequence[Provider]:
    """Register the QuickBooks provider."""
    return [QuickBooksProvider()]
