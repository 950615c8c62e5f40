"""Every scenario module, imported for its registrations."""

from __future__ import annotations

from bench.proving import (
    config_scenarios,
    http_scenarios,
    pending_scenarios,
    secret_scenarios,
    sync_scenarios,
)

__all__ = ["config_scenarios", "http_scenarios", "pending_scenarios", "secret_scenarios",
           "sync_scenarios"]
