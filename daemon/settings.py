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



def _split_names(value: Any) -> Any:
    """A list setting given as a JSON list or as comma-separated names."""
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            return json.loads(text)
        return [part.strip() for part in text.split(",") if part.strip()]
    return value

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
    db_idle_transaction_timeout: float = Field(
        default=60.0, ge=0,
        description="Seconds a connection may sit inside a transaction without sending "
        "anything before Postgres ends its session, releasing its locks and rolling its "
        "writes back: a worker cut off from the database or frozen cannot hold a job's row "
        "past its lease for ever. Keep it above the longest provider call made inside a "
        "transaction (an OAuth refresh, 30 s). 0 turns it off.",
    )
    db_acquire_timeout: float = Field(
        default=30.0, gt=0,
        description="Seconds to wait for a free pooled connection before giving up (a job "
        "then ends as a retry; nothing waits for ever).",
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
        return _split_names(value)

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
    config_max_file_bytes: int = Field(
        default=1_048_576, ge=1, description="Largest config file read, in bytes."
    )
    config_max_depth: int = Field(
        default=64, ge=2, le=500,
        description="Deepest nesting of mappings and lists in a config file.",
    )
    config_max_nodes: int = Field(
        default=100_000, ge=1,
        description="Most values in a config file once YAML aliases are expanded.",
    )

    # --- credential references --------------------------------------------------------
    credential_env_prefixes: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["VENUE_"],
        description="Prefixes an env:NAME credential reference must start with "
        "(comma-separated or a JSON list).",
    )
    secrets_dir: Path = Field(
        default=Path("/run/secrets"),
        description="Directory every file:PATH credential reference must stay inside.",
    )

    @field_validator("credential_env_prefixes", mode="before")
    @classmethod
    def _split_prefixes(cls, value: Any) -> Any:
        if isinstance(value, str):
            text = value.strip()
            value = json.loads(text) if text.startswith("[") else text.split(",")
        if isinstance(value, list):
            return [str(part).strip() for part in value if str(part).strip()]
        return value

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
    scheduler_time_scale: float = Field(
        default=1.0, gt=0, le=3600,
        description="For tests and demos only: the scheduler's clock runs this many times "
        "faster than real time (at 20, a cron minute passes in 3 seconds). Leave at 1.",
    )
    leader_retry_seconds: float = Field(
        default=2.0, gt=0,
        description="How often a `syncd run` replica that does not lead tries for "
        "leadership (a new leader takes over within this long of the old one's loss).",
    )
    leader_check_seconds: float = Field(
        default=1.0, gt=0,
        description="How often the leader checks the connection that holds its leadership; "
        "a failed check ends its duties at once.",
    )
    run_migrate: bool = Field(
        default=False,
        description="`syncd run` applies pending migrations at start (off: it refuses to "
        "start while any are pending; `syncd migrate` applies them).",
    )
    health_interval_seconds: float = Field(
        default=60.0, gt=0,
        description="Seconds between two rounds of the health monitor (leader only).",
    )
    health_batch_size: int = Field(
        default=100, ge=1,
        description="Most integrations one health round checks (the least recently "
        "checked first), so a large config is covered over several rounds.",
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

    # --- HTTP server ------------------------------------------------------------------
    http_host: str = Field(
        default="127.0.0.1", description="Address `syncd serve` listens on (--host wins)."
    )
    http_port: int = Field(
        default=8080, ge=0, le=65535, description="Port `syncd serve` listens on (--port wins)."
    )
    public_base_url: str | None = Field(
        default=None,
        description="The server's public origin as providers see it (https://syncd.example); "
        "Square signs the notification URL, so it must match the registered one.",
    )
    webhook_secrets: dict[str, SecretStr] = Field(
        default_factory=dict,
        description="App-level webhook secrets by provider, a JSON object such as "
        '{"square": "...", "quickbooks": "..."} (Square signature key, QuickBooks verifier '
        "token, a Stripe Connect endpoint secret).",
    )
    webhook_url_token_providers: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["mailchimp"],
        description="Providers whose per-venue deliveries may prove themselves by a secret "
        "token in the URL instead of a signature (comma-separated or a JSON list).",
    )

    @field_validator("webhook_url_token_providers", mode="before")
    @classmethod
    def _split_token_providers(cls, value: Any) -> Any:
        return _split_names(value)

    webhook_max_body_bytes: int = Field(
        default=1024 * 1024, ge=1024, description="Largest webhook body accepted (413 beyond)."
    )
    http_max_field_size: int = Field(
        default=8190, ge=256, description="Longest request header line accepted, in bytes."
    )
    http_max_headers: int = Field(
        default=64, ge=8, description="Most request headers accepted in one request."
    )
    http_status_public: bool = Field(
        default=False,
        description="Serve the status page at / without signing in (every venue shown): "
        "only where the server is reachable from a private network alone.",
    )
    webhook_batch_size: int = Field(
        default=256, ge=1, le=10000,
        description="Most webhook deliveries stored in one transaction (group commit).",
    )
    webhook_max_pending: int = Field(
        default=4096, ge=1,
        description="Deliveries waiting for a commit before new ones are answered 503.",
    )
    webhook_max_attempts: int = Field(
        default=5, ge=1,
        description="Times a stored webhook event is processed before it is marked failed.",
    )
    health_max_loop_lag_seconds: float = Field(
        default=5.0, gt=0,
        description="Event-loop lag beyond which GET /healthz answers 503.",
    )

    # --- admin API authentication -------------------------------------------------------
    api_jwt_secret: SecretStr | None = Field(
        default=None, description="HS256 secret the platform signs admin API tokens with."
    )
    api_jwt_public_key: str | None = Field(
        default=None,
        description="RS256 public key (PEM text, or the path of a PEM file) the platform's "
        "admin API tokens verify with.",
    )
    api_jwt_issuer: str | None = Field(
        default=None, description="Required iss claim of admin API tokens."
    )
    api_jwt_audience: str | None = Field(
        default=None, description="Required aud claim of admin API tokens."
    )
    api_jwt_leeway_seconds: float = Field(
        default=30.0, ge=0, le=300,
        description="Clock skew allowed when checking exp and nbf of admin API tokens.",
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
