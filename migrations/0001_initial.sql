-- syncd's schema. Money is integer minor units with a currency code; time is timestamptz.
-- Tables kept from the service syncd replaces are fixed where it was wrong: statuses are
-- CHECK-constrained (nothing writes a value outside them), secrets are stored only as
-- ciphertext with the key version, and every foreign reference points at a real table.

-- Field-mapping templates, reconciled from config/templates/*.yaml.
CREATE TABLE field_mapping_templates (
    id               uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    name             text        NOT NULL,
    description      text,
    venue_type       text CHECK (venue_type IN
                         ('comedy_club', 'music_venue', 'theater', 'festival', 'standard')),
    provider         text        NOT NULL,
    mappings         jsonb       NOT NULL,
    validation_rules jsonb,
    usage_count      integer     NOT NULL DEFAULT 0 CHECK (usage_count >= 0),
    last_used_at     timestamptz,
    is_default       boolean     NOT NULL DEFAULT false,
    is_active        boolean     NOT NULL DEFAULT true,
    managed_by       text        NOT NULL DEFAULT 'config' CHECK (managed_by IN ('config', 'api')),
    spec_hash        text,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    UNIQUE (provider, name)
);
CREATE INDEX field_mapping_templates_lookup
    ON field_mapping_templates (provider, venue_type) WHERE is_active;
-- At most one default template per provider.
CREATE UNIQUE INDEX field_mapping_templates_one_default
    ON field_mapping_templates (provider) WHERE is_default AND is_active;

-- Applied config revisions: what was in force, from which commit.
CREATE TABLE config_revisions (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    content_hash  text        NOT NULL,
    git_commit    text,
    source        text        NOT NULL DEFAULT 'cli',
    applied_by    text,
    applied_at    timestamptz NOT NULL DEFAULT now(),
    created       integer     NOT NULL DEFAULT 0,
    updated       integer     NOT NULL DEFAULT 0,
    disabled      integer     NOT NULL DEFAULT 0,
    deleted       integer     NOT NULL DEFAULT 0,
    unchanged     integer     NOT NULL DEFAULT 0,
    summary       jsonb       NOT NULL DEFAULT '{}'
);
CREATE INDEX config_revisions_applied_at ON config_revisions (applied_at DESC);

-- One venue's use of one provider.
CREATE TABLE integration_configs (
    id                  uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    venue_id            uuid        NOT NULL,
    provider            text        NOT NULL,
    venue_name          text,
    venue_type          text        NOT NULL DEFAULT 'standard' CHECK (venue_type IN
                            ('comedy_club', 'music_venue', 'theater', 'festival', 'standard')),
    timezone            text        NOT NULL DEFAULT 'UTC',
    enabled             boolean     NOT NULL DEFAULT true,
    environment         text        NOT NULL DEFAULT 'production'
                            CHECK (environment IN ('production', 'sandbox')),
    status              text        NOT NULL DEFAULT 'disconnected' CHECK (status IN
                            ('disconnected', 'connecting', 'connected', 'error', 'suspended')),
    -- References to secrets ("oauth", "env:NAME", "file:/path"), never secrets.
    credentials         jsonb       NOT NULL DEFAULT '{}',
    -- {entity: {"cron": "...", "lane": "NORMAL", "direction": "push"}}
    schedules           jsonb       NOT NULL DEFAULT '{}',
    field_mappings      jsonb       NOT NULL DEFAULT '{}',
    options             jsonb       NOT NULL DEFAULT '{}',
    template_id         uuid REFERENCES field_mapping_templates (id) ON DELETE SET NULL,
    template_applied_at timestamptz,
    managed_by          text        NOT NULL DEFAULT 'config' CHECK (managed_by IN ('config', 'api')),
    spec_hash           text,
    config_revision_id  bigint REFERENCES config_revisions (id) ON DELETE SET NULL,
    connected_at        timestamptz,
    disconnected_at     timestamptz,
    last_sync_at        timestamptz,
    next_sync_at        timestamptz,
    health_status       text        NOT NULL DEFAULT 'unknown'
                            CHECK (health_status IN ('healthy', 'degraded', 'unhealthy', 'unknown')),
    health_checked_at   timestamptz,
    failure_count       integer     NOT NULL DEFAULT 0 CHECK (failure_count >= 0),
    last_error          text,
    last_error_at       timestamptz,
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now(),
    UNIQUE (venue_id, provider)
);
CREATE INDEX integration_configs_enabled ON integration_configs (provider) WHERE enabled;
CREATE INDEX integration_configs_health ON integration_configs (health_status);

-- OAuth tokens: ciphertext only (AES-GCM, with the key version that sealed it).
CREATE TABLE oauth_tokens (
    id                        uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    venue_id                  uuid        NOT NULL,
    provider                  text        NOT NULL,
    encrypted_access_token    bytea       NOT NULL,
    encrypted_refresh_token   bytea,
    encryption_key_version    integer     NOT NULL CHECK (encryption_key_version > 0),
    scopes                    text[],
    token_type                text        NOT NULL DEFAULT 'Bearer',
    -- Provider account the token acts for: QuickBooks realmId, Mailchimp dc, Stripe account.
    account_id                text,
    expires_at                timestamptz,
    refresh_token_expires_at  timestamptz,
    refresh_count             integer     NOT NULL DEFAULT 0,
    last_refreshed_at         timestamptz,
    refresh_failed_count      integer     NOT NULL DEFAULT 0,
    created_by                text,
    created_ip                inet,
    last_used_at              timestamptz,
    created_at                timestamptz NOT NULL DEFAULT now(),
    updated_at                timestamptz NOT NULL DEFAULT now(),
    UNIQUE (venue_id, provider),
    FOREIGN KEY (venue_id, provider)
        REFERENCES integration_configs (venue_id, provider) ON DELETE CASCADE
);
CREATE INDEX oauth_tokens_expires_at ON oauth_tokens (expires_at);

-- OAuth authorisation requests in flight: single use, short expiry, shared by replicas.
CREATE TABLE oauth_states (
    state          text PRIMARY KEY,
    venue_id       uuid        NOT NULL,
    provider       text        NOT NULL,
    redirect_uri   text        NOT NULL,
    -- PKCE verifier, encrypted like every other secret.
    encrypted_code_verifier bytea,
    encryption_key_version  integer,
    created_by     text,
    created_at     timestamptz NOT NULL DEFAULT now(),
    expires_at     timestamptz NOT NULL,
    consumed_at    timestamptz,
    CHECK (expires_at > created_at)
);
CREATE INDEX oauth_states_expires_at ON oauth_states (expires_at);

-- API keys and webhook secrets stored by syncd (when not referenced from env or files).
CREATE TABLE venue_api_keys (
    id                     uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    venue_id               uuid        NOT NULL,
    provider               text        NOT NULL,
    key_name               text        NOT NULL DEFAULT 'api_key',
    encrypted_api_key      bytea       NOT NULL,
    encrypted_api_secret   bytea,
    encryption_key_version integer     NOT NULL CHECK (encryption_key_version > 0),
    environment            text        NOT NULL DEFAULT 'production'
                               CHECK (environment IN ('production', 'sandbox')),
    is_valid               boolean     NOT NULL DEFAULT true,
    last_validated_at      timestamptz,
    validation_error       text,
    created_at             timestamptz NOT NULL DEFAULT now(),
    updated_at             timestamptz NOT NULL DEFAULT now(),
    UNIQUE (venue_id, provider, environment, key_name)
);

-- The durable work queue.
CREATE TABLE sync_queue (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    venue_id         uuid        NOT NULL,
    provider         text        NOT NULL,
    operation        text        NOT NULL DEFAULT 'sync'
                         CHECK (operation IN ('create', 'update', 'delete', 'sync', 'reconcile')),
    entity_type      text        NOT NULL,
    entity_id        text,
    payload          jsonb       NOT NULL DEFAULT '{}',
    idempotency_key  text UNIQUE,
    lane             text        NOT NULL DEFAULT 'NORMAL'
                         CHECK (lane IN ('CRITICAL', 'HIGH', 'NORMAL', 'LOW')),
    status           text        NOT NULL DEFAULT 'pending' CHECK (status IN
                         ('pending', 'processing', 'completed', 'failed', 'dead_letter')),
    attempts         integer     NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    max_attempts     integer     NOT NULL DEFAULT 10 CHECK (max_attempts > 0),
    run_at           timestamptz NOT NULL DEFAULT now(),
    queued_at        timestamptz NOT NULL DEFAULT now(),
    started_at       timestamptz,
    completed_at     timestamptz,
    expires_at       timestamptz NOT NULL DEFAULT now() + interval '7 days',
    last_error       text,
    error_kind       text CHECK (error_kind IN ('retryable', 'auth', 'permanent', 'expired', 'lease')),
    error_count      integer     NOT NULL DEFAULT 0,
    correlation_id   text,
    lease_owner      text,
    lease_token      uuid,
    lease_expires_at timestamptz,
    CHECK ((status = 'processing') = (lease_token IS NOT NULL))
);
-- Claim path: pending rows per lane in due order.
CREATE INDEX sync_queue_claim ON sync_queue (lane, run_at, id) WHERE status = 'pending';
-- At most one running job per (venue, provider), enforced by Postgres.
CREATE UNIQUE INDEX sync_queue_one_running
    ON sync_queue (venue_id, provider) WHERE status = 'processing';
-- Lease rescue scans running rows by expiry.
CREATE INDEX sync_queue_leases ON sync_queue (lease_expires_at) WHERE status = 'processing';
CREATE INDEX sync_queue_venue ON sync_queue (venue_id, provider, status);
CREATE INDEX sync_queue_finished ON sync_queue (completed_at)
    WHERE status IN ('completed', 'failed', 'dead_letter');

-- Cron ticks fired: one row per (integration, entity, tick), whichever replica got there first.
CREATE TABLE schedule_ticks (
    integration_id uuid        NOT NULL REFERENCES integration_configs (id) ON DELETE CASCADE,
    entity_type    text        NOT NULL,
    tick           timestamptz NOT NULL,
    job_id         bigint,
    fired_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (integration_id, entity_type, tick)
);

-- Inbound webhook deliveries, stored once after their signature checked out.
CREATE TABLE integration_webhooks (
    id            uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    venue_id      uuid,
    provider      text        NOT NULL,
    event_type    text        NOT NULL,
    -- The provider's event id (or a digest of the delivery where it has none): the dedupe key.
    external_id   text        NOT NULL,
    headers       jsonb,
    payload       jsonb       NOT NULL,
    status        text        NOT NULL DEFAULT 'pending' CHECK (status IN
                      ('pending', 'processing', 'processed', 'failed', 'ignored')),
    processed_at  timestamptz,
    error         text,
    retry_count   integer     NOT NULL DEFAULT 0,
    received_at   timestamptz NOT NULL DEFAULT now(),
    UNIQUE (provider, external_id)
);
CREATE INDEX integration_webhooks_status ON integration_webhooks (status, received_at);

-- Changes pulled from or pushed by a provider, for the platform to act on.
CREATE TABLE inbound_changes (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    venue_id     uuid        NOT NULL,
    provider     text        NOT NULL,
    entity_type  text        NOT NULL,
    remote_id    text        NOT NULL,
    local_id     text,
    change       text        NOT NULL CHECK (change IN
                     ('created', 'updated', 'deleted', 'unsubscribed', 'subscribed', 'other')),
    payload      jsonb       NOT NULL DEFAULT '{}',
    source       text        NOT NULL CHECK (source IN ('webhook', 'pull')),
    dedupe_key   text        NOT NULL,
    occurred_at  timestamptz,
    received_at  timestamptz NOT NULL DEFAULT now(),
    processed_at timestamptz,
    UNIQUE (provider, dedupe_key)
);
CREATE INDEX inbound_changes_unprocessed
    ON inbound_changes (venue_id, provider, received_at) WHERE processed_at IS NULL;

-- A local record and the remote record it is synced to.
CREATE TABLE entity_links (
    venue_id       uuid        NOT NULL,
    provider       text        NOT NULL,
    entity_type    text        NOT NULL,
    local_id       text        NOT NULL,
    remote_id      text,
    -- Digest of the mapped record last accepted by the provider; equal means "skip".
    content_hash   text,
    remote_version text,
    state          text        NOT NULL DEFAULT 'synced'
                       CHECK (state IN ('pending', 'synced', 'failed', 'deleted', 'archived')),
    last_error     text,
    last_synced_at timestamptz,
    source_updated_at timestamptz,
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (venue_id, provider, entity_type, local_id)
);
CREATE UNIQUE INDEX entity_links_remote
    ON entity_links (venue_id, provider, entity_type, remote_id) WHERE remote_id IS NOT NULL;

-- One row per sync run.
CREATE TABLE sync_logs (
    id             uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    venue_id       uuid        NOT NULL,
    provider       text        NOT NULL,
    job_id         bigint,
    operation      text        NOT NULL,
    entity_type    text,
    entity_count   integer,
    status         text        NOT NULL CHECK (status IN
                       ('running', 'completed', 'partial', 'failed', 'cancelled')),
    success_count  integer     NOT NULL DEFAULT 0,
    error_count    integer     NOT NULL DEFAULT 0,
    skip_count     integer     NOT NULL DEFAULT 0,
    duration_ms    integer,
    api_calls_made integer     NOT NULL DEFAULT 0,
    bytes_sent     bigint      NOT NULL DEFAULT 0,
    details        jsonb       NOT NULL DEFAULT '{}',
    errors         jsonb       NOT NULL DEFAULT '[]',
    started_at     timestamptz NOT NULL,
    completed_at   timestamptz
);
CREATE INDEX sync_logs_venue_started ON sync_logs (venue_id, provider, started_at DESC);
CREATE INDEX sync_logs_job ON sync_logs (job_id);

-- Health per integration, recomputed by the health monitor.
CREATE TABLE integration_health (
    venue_id             uuid        NOT NULL,
    provider             text        NOT NULL,
    status               text        NOT NULL DEFAULT 'unknown'
                             CHECK (status IN ('healthy', 'degraded', 'unhealthy', 'unknown')),
    success_rate         numeric(5, 2) CHECK (success_rate BETWEEN 0 AND 100),
    average_sync_time_ms integer,
    last_success_at      timestamptz,
    last_failure_at      timestamptz,
    sync_count_24h       integer     NOT NULL DEFAULT 0,
    success_count_24h    integer     NOT NULL DEFAULT 0,
    failure_count_24h    integer     NOT NULL DEFAULT 0,
    api_calls_24h        integer     NOT NULL DEFAULT 0,
    api_quota_remaining  integer,
    api_quota_resets_at  timestamptz,
    queue_depth          integer     NOT NULL DEFAULT 0,
    oldest_queue_item_at timestamptz,
    connection_ok        boolean,
    calculated_at        timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (venue_id, provider)
);

-- API usage per integration and period (a day).
CREATE TABLE integration_costs (
    venue_id         uuid        NOT NULL,
    provider         text        NOT NULL,
    period_start     date        NOT NULL,
    period_end       date        NOT NULL,
    api_calls        integer     NOT NULL DEFAULT 0,
    bytes_synced     bigint      NOT NULL DEFAULT 0,
    records_synced   integer     NOT NULL DEFAULT 0,
    -- Costs in minor units of cost_currency.
    base_cost        bigint,
    overage_cost     bigint,
    total_cost       bigint,
    cost_currency    char(3),
    included_in_plan boolean     NOT NULL DEFAULT true,
    billed_to_venue  boolean     NOT NULL DEFAULT false,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (venue_id, provider, period_start),
    CHECK (period_end >= period_start)
);
