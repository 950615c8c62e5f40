"""Settings from the environment (prefix ``SYNCD_``) and an optional ``.env`` file.

Every field here is documented in ``docs/configuration.md`` and ``.env.example``; a test keeps
the three in step.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, Literal

import platformdirs
from pydantic import (
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

__all__ = ["OAuthClient", "Settings", "default_data_dir"]


def default_data_dir() -> Path:
    """Where the embedded Postgres keeps its data unless told otherwise."""
    return Path(platformdirs.user_data_dir("syncd")) / "pgdata"


class OAuthClient(BaseModel):
    """syncd's registration (OAuth app) at one provider."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    client_id: str = Field(min_length=1)
    #: The secret itself, or a reference (env:NAME, file:/path) resolved when used.
    client_secret: SecretStr | None = None


class Settings(BaseSettings):
    """syncd's settings. Environment variables win over ``.env``; both over defaults."""

    model_config = SettingsConfigDict(
        env_prefix="SYNCD_",
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        populate_by_name=True,
    )

    # --- database ---------------------------------------------------------------------
    database_url: SecretStr | None = Field(
        default=None,
        validation_alias=AliasChoices("SYNCD_DATABASE_URL", "DATABASE_URL"),
        description="Postgres URL. Unset: an embedded Postgres under data_dir.",
    )
    data_dir: Path = Field(
        default_factory=default_data_dir,
        description="Data directory of the embedded Postgres (used when no database URL is set).",
    )
    db_pool_min_size: int = Field(default=1, ge=0, description="Smallest connection pool size.")
    db_pool_max_size: int = Field(default=10, ge=1, description="Largest connection pool size.")
    db_connect_timeout: float = Field(
        default=10.0, gt=0, description="Seconds to wait for a database connection."
    )

    # --- plugins ----------------------------------------------------------------------
    plugins: Annotated[list[str] | None, NoDecode] = Field(
        default=None,
        description="Allow-list of plugin names to load (JSON list or comma-separated). "
        "Unset: every installed plugin.",
    )
    @field_validator("plugins", mode="before")
    @classmethod
    def _split_plugins(cls, value: Any) -> Any:
        if isinstance(value, str):
            text = value.strip()
            if text.startswith("["):
                return json.loads(text)
            return [part.strip() for part in text.split(",") if part.strip()]
        return value

    trace_hooks: bool = Field(default=False, description="Log every plugin hook call.")

    # --- config-as-code ---------------------------------------------------------------
    config_dir: Path = Field(
        default=Path("config"), description="Directory holding venues/ and templates/."
    )
    config_poll_interval: float = Field(
        default=5.0, gt=0,
        description="Seconds between checks of the config directory for changed files.",
    )
    config_max_disable_share: float = Field(
        default=0.5, ge=0, le=1,
        description="Largest share of managed integrations one apply may switch off "
        "without --force.",
    )

    # --- queue and workers ------------------------------------------------------------
    worker_concurrency: int = Field(
        default=4, ge=1, description="Jobs one `syncd worker` process runs at once."
    )
    queue_lane_weights: Annotated[tuple[int, int, int, int], NoDecode] = Field(
        default=(8, 4, 2, 1),
        description="Shares of CRITICAL:HIGH:NORMAL:LOW under load, e.g. 8:4:2:1 (each >= 1).",
    )

    @field_validator("queue_lane_weights", mode="before")
    @classmethod
    def _split_weights(cls, value: Any) -> Any:
        if isinstance(value, str):
            parts = [p.strip() for p in value.replace(",", ":").split(":") if p.strip()]
            if len(parts) != 4 or not all(p.isdigit() and int(p) >= 1 for p in parts):
                raise ValueError("expected four whole numbers >= 1, like 8:4:2:1")
            return tuple(int(p) for p in parts)
        return value

    queue_batch_size: int = Field(
        default=10, ge=1, le=1000, description="Most jobs claimed in one round trip."
    )
    queue_lease_seconds: float = Field(
        default=60.0, gt=0, description="Lease on a running job; renewed by heartbeat."
    )
    queue_heartbeat_seconds: float = Field(
        default=15.0, gt=0, description="How often running jobs' leases are renewed."
    )
    queue_poll_seconds: float = Field(
        default=5.0, gt=0, description="Idle workers look for due jobs at least this often."
    )
    queue_retry_base_seconds: float = Field(
        default=5.0, gt=0, description="First retry backoff ceiling (doubles per attempt)."
    )
    queue_retry_cap_seconds: float = Field(
        default=3600.0, gt=0, description="Largest retry backoff."
    )
    queue_max_attempts: int = Field(
        default=10, ge=1, description="Attempts before a job goes to the dead-letter queue."
    )
    queue_job_ttl_seconds: float = Field(
        default=7 * 86400.0, gt=0, description="A job not run within this long expires."
    )
    queue_retention_days: float = Field(
        default=14.0, gt=0, description="Completed and failed jobs are pruned after this."
    )
    worker_grace_seconds: float = Field(
        default=30.0, ge=0, description="On SIGTERM, how long running jobs may take to finish."
    )
    scheduler_poll_seconds: float = Field(
        default=10.0, gt=0, description="How often the scheduler leader looks for due ticks."
    )
    scheduler_jitter_seconds: float = Field(
        default=0.0, ge=0, description="Spread each scheduled job over this many seconds."
    )
    scheduler_catchup_spread_seconds: float = Field(
        default=300.0, ge=0,
        description="A tick missed while no scheduler ran (the first start of a config, "
        "downtime) runs at a point spread over this many seconds from now, not at once.",
    )
    ratelimit_shared: bool = Field(
        default=True,
        description="Enforce provider account limits across every replica through Postgres "
        "(off: each process keeps the whole limit to itself).",
    )
    ratelimit_margin: float = Field(
        default=0.97, gt=0, le=1,
        description="Fraction of each documented provider rate the shared limiter grants.",
    )
    ratelimit_grant_seconds: float = Field(
        default=0.2, gt=0,
        description="Largest grant of shared tokens a process takes at once, in seconds of "
        "the account's rate (fewer round trips against finer sharing).",
    )

    @model_validator(mode="after")
    def _heartbeat_within_lease(self) -> Settings:
        if self.queue_heartbeat_seconds * 2 > self.queue_lease_seconds:
            raise ValueError(
                "queue_heartbeat_seconds must be at most half of queue_lease_seconds"
            )
        return self

    # --- secrets and OAuth ---------------------------------------------------------------
    encryption_keys: SecretStr | None = Field(
        default=None,
        description="Vault keys as VERSION:KEY entries (comma-separated), as `syncd keys "
        "generate` prints them; the highest version seals new values.",
    )
    encryption_key_files: Annotated[list[Path], NoDecode] = Field(
        default_factory=list,
        description="Files holding more VERSION:KEY lines (comma-separated paths).",
    )

    @field_validator("encryption_key_files", mode="before")
    @classmethod
    def _split_key_files(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [Path(part.strip()) for part in value.split(",") if part.strip()]
        return value

    vault_rotate_batch_size: int = Field(
        default=100, ge=1, le=10_000,
        description="Secrets re-encrypted per transaction by `syncd keys rotate`.",
    )
    oauth_clients: dict[str, OAuthClient] = Field(
        default_factory=dict,
        description="OAuth apps per provider, JSON: {\"square\": {\"client_id\": \"...\", "
        "\"client_secret\": \"env:SQUARE_SECRET\"}}.",
    )
    oauth_redirect_url: str = Field(
        default="http://localhost:8080",
        description="Public base URL of syncd's HTTP app; providers redirect to "
        "<this>/oauth/<provider>/callback.",
    )
    oauth_refresh_margin_seconds: float = Field(
        default=300.0, ge=0,
        description="Access tokens are refreshed this long before they expire.",
    )

    # --- runtime ----------------------------------------------------------------------
    event_loop: Literal["auto", "uvloop", "asyncio"] = Field(
        default="auto",
        description="Event loop: uvloop where installed (auto), or force uvloop or asyncio.",
    )

    # --- logging ----------------------------------------------------------------------
    log_level: Literal["debug", "info", "warning", "error"] = Field(
        default="info", description="Lowest level of log events written."
    )
    log_format: Literal["auto", "json", "console"] = Field(
        default="auto",
        description="auto: readable on a terminal, JSON otherwise.",
    )
