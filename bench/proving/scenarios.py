"""Every scenario module, imported for its registrations."""

from __future__ import annotations

from bench.proving import http_scenarios, sync_scenarios

__all__ = ["http_scenarios", "sync_scenarios"]
