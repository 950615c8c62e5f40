"""syncd: a plugin-based sync daemon with config-as-code.

Plugin authors import the hook marker from here::

    from daemon import hookimpl
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

import pluggy

__all__ = ["PROJECT", "__version__", "hookimpl"]

PROJECT = "syncd"

hookimpl = pluggy.HookimplMarker(PROJECT)
"""Marker for plugin hook implementations."""

try:
    __version__ = version("syncd")
except PackageNotFoundError:  # pragma: no cover - running from a bare checkout
    __version__ = "0.0.0"
