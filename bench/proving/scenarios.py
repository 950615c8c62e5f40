"""Every scenario module, imported for its registrations."""

from __future__ import annotations

from bench.proving import sync_scenarios

__all__ = ["sync_scenarios"]
