"""Settings of the sync engine (environment prefix ``SYNCD_SYNC_``)."""

from __future__ import annotations

from collections.abc import Mapping

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["SyncSettings", "base_url_for"]


class SyncSettings(BaseSettings):
    """How the engine paces, batches and checks."""

    model_config = SettingsConfigDict(env_prefix="SYNCD_SYNC_", extra="ignore")

    full_check_hours: float = Field(
        default=24.0, gt=0,
        description="A run rescans every row (and finds rows deleted at the source) when the "
                    "last full check is older than this.")
    overlap_seconds: float = Field(
        default=300.0, ge=0,
        description="Incremental runs re-read rows changed this long before the watermark, "
                    "so a transaction that committed late is not missed.")
    rate_margin: float = Field(
        default=0.97, gt=0, le=1,
        description="Fraction of a provider's documented request rate the engine uses.")
    max_attempts: int = Field(
        default=4, ge=1,
        description="Tries of one batch on retryable errors before the run stops to retry "
                    "later.")
    max_backoff_seconds: float = Field(default=60.0, gt=0,
                                       description="Longest wait between two tries.")
    base_urls: dict[str, str] = Field(
        default_factory=dict,
        description="Provider base URL overrides, e.g. '{\"square\": \"http://127.0.0.1:8801\"}' "
                    "for emulators and sandboxes; a key 'provider/venue-id' overrides one "
                    "venue's (an emulator company of its own).")
    error_samples: int = Field(default=50, ge=0,
                               description="Per-record errors kept in a sync log row.")


def base_url_for(base_urls: Mapping[str, str], provider: str, venue_id: str) -> str | None:
    """The override for one venue's integration: ``provider/venue-id``, else ``provider``."""
    return base_urls.get(f"{provider}/{venue_id}") or base_urls.get(provider)
