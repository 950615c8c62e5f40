"""The Square provider plugin for syncd."""

from __future__ import annotations

from collections.abc import Sequence

from daemon import hookimpl
from daemon.provider import Provider
from plugins.square.provider import SquareProvider

__all__ = ["SquareProvider", "syncd_register_providers"]


@hookimpl
def syncd_register_providers() -> Sequence[Provider]:
    """Register the Square provider."""
    return [SquareProvider()]
