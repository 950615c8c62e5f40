-- Queries of the sync engine (daemon/sync/).

-- name: integration
SELECT * FROM integration_configs WHERE venue_id = $1::uuid AND provider = $2

-- name: integration_by_venue_name
SELECT * FROM integration_configs WHERE venue_name = $1 AND provider = $2

-- name: template_by_id
SELECT id, name, provider, venue_type, mappings FROM field_mapping_templates
WHERE id = $1 AND is_active

-- name: template_for_venue_type
SELECT id, name, provider, venue_type, mappings FROM field_mapping_templates
WHERE provider = $1 AND venue_type = $2 AND is_active
ORDER BY usage_count DESC, name
LIMIT 1

-- name: default_template
SELECT id, name, provider, venue_type, mappings FROM field_mapping_templates
WHERE provider = $1 AND is_default AND is_active

-- name: template_applied
-- Once per (integration, template): a second run racing this one (a worker whose lease was
-- taken over, say) waits for the row lock, then finds the template applied and changes
-- nothing, so the template's use is counted once whoever runs.
UPDATE integration_configs
SET template_id = $3, template_applied_at = now(), updated_at = now()
WHERE venue_id = $1::uuid AND provider = $2
  AND (template_id IS DISTINCT FROM $3::uuid OR template_applied_at IS NULL)
RETURNING id

-- name: template_used
UPDATE field_mapping_templates
SET usage_count = usage_count + 1, last_used_at = now(), updated_at = now()
WHERE id = $1

-- name: links_for
-- A join on unnest, not "local_id = ANY($4)": once Postgres switches the prepared statement
-- to a generic plan, ANY over a 2,000-element array became a scan testing every link
-- against every id (seconds per chunk); the join keeps one index probe per id.
SELECT l.local_id, l.remote_id, l.content_hash, l.remote_version, l.state, l.created_at,
       l.last_synced_at, l.refused_at
FROM unnest($4::text[]) AS u(local_id)
JOIN entity_links l
  ON l.venue_id = $1::uuid AND l.provider = $2 AND l.entity_type = $3
 AND l.local_id = u.local_id

-- name: unsettled_ids
SELECT local_id FROM entity_links
WHERE venue_id = $1::uuid AND provider = $2 AND entity_type = $3
  AND state IN ('pending', 'failed')

-- name: live_links_page
SELECT local_id, remote_id, content_hash, remote_version, state, created_at, last_synced_at,
       refused_at
FROM entity_links
WHERE venue_id = $1::uuid AND provider = $2 AND entity_type = $3
  AND state IN ('synced', 'pending', 'failed') AND local_id > $4
ORDER BY local_id
LIMIT $5

-- name: write_links
-- $10: the platform values each record was mapped from (NULL for deletes and archives: the
-- stored values stay).
INSERT INTO entity_links AS l (venue_id, provider, entity_type, local_id, remote_id,
                               content_hash, remote_version, state, last_error,
                               last_synced_at, source_updated_at, updated_at, pushed_values)
SELECT $1::uuid, $2, $3, u.local_id, u.remote_id, u.content_hash, u.remote_version, u.state,
       NULL, now(), u.source_updated_at, now(), u.pushed_values::jsonb
FROM unnest($4::text[], $5::text[], $6::text[], $7::text[], $8::text[], $9::timestamptz[],
            $10::text[])
     AS u(local_id, remote_id, content_hash, remote_version, state, source_updated_at,
          pushed_values)
ON CONFLICT (venue_id, provider, entity_type, local_id) DO UPDATE SET
    pushed_values = COALESCE(EXCLUDED.pushed_values, l.pushed_values),
    remote_id = COALESCE(EXCLUDED.remote_id, l.remote_id),
    content_hash = EXCLUDED.content_hash,
    remote_version = COALESCE(EXCLUDED.remote_version, l.remote_version),
    state = EXCLUDED.state,
    last_error = NULL,
    last_synced_at = now(),
    source_updated_at = COALESCE(EXCLUDED.source_updated_at, l.source_updated_at),
    updated_at = now()

-- name: mark_attempts
-- A create is about to be sent: a pending link without remote id (kept if one exists), whose
-- created_at tells the next run when an earlier attempt may have reached the provider.
INSERT INTO entity_links (venue_id, provider, entity_type, local_id, state, updated_at)
SELECT $1::uuid, $2, $3, u.local_id, 'pending', now()
FROM unnest($4::text[]) AS u(local_id)
ON CONFLICT (venue_id, provider, entity_type, local_id) DO NOTHING

-- name: mark_updates
-- Updates are about to be sent: each link leaves 'synced' until the answer is recorded. If
-- the provider commits and the answer is lost (crash, lost lease), the next run sends the
-- record again, even when its content went back to what the link last confirmed (A, then
-- B sent unconfirmed, then A again).
UPDATE entity_links AS l SET state = 'pending', updated_at = now()
FROM unnest($4::text[]) AS u(local_id)
WHERE l.venue_id = $1::uuid AND l.provider = $2 AND l.entity_type = $3
  AND l.local_id = u.local_id AND l.state = 'synced'

-- name: links_by_remote
SELECT l.remote_id, l.local_id
FROM unnest($4::text[]) AS u(remote_id)
JOIN entity_links l
  ON l.venue_id = $1::uuid AND l.provider = $2 AND l.entity_type = $3
 AND l.remote_id = u.remote_id

-- name: write_failures
-- $7: the provider refused these records (a permanent failure), see refused_at.
INSERT INTO entity_links AS l (venue_id, provider, entity_type, local_id, state, last_error,
                               source_updated_at, refused_at, updated_at)
SELECT $1::uuid, $2, $3, u.local_id, 'failed', u.error, u.source_updated_at,
       CASE WHEN $7 THEN now() END, now()
FROM unnest($4::text[], $5::text[], $6::timestamptz[]) AS u(local_id, error, source_updated_at)
ON CONFLICT (venue_id, provider, entity_type, local_id) DO UPDATE SET
    state = 'failed', last_error = EXCLUDED.last_error,
    refused_at = CASE WHEN $7 THEN now() ELSE l.refused_at END, updated_at = now()

-- name: settle_frozen
-- Changed write-once records the provider holds and cannot change are not sent: the link
-- takes the new digest (so this version is reported once, not on every run), is synced,
-- and says why in last_error ($7). remote_id, remote_version and last_synced_at still
-- describe what was sent.
UPDATE entity_links AS l SET
    content_hash = u.content_hash,
    state = 'synced',
    last_error = $7,
    source_updated_at = COALESCE(u.source_updated_at, l.source_updated_at),
    updated_at = now()
FROM unnest($4::text[], $5::text[], $6::timestamptz[])
     AS u(local_id, content_hash, source_updated_at)
WHERE l.venue_id = $1::uuid AND l.provider = $2 AND l.entity_type = $3
  AND l.local_id = u.local_id AND l.remote_id IS NOT NULL
  AND l.state NOT IN ('deleted', 'archived')

-- name: release_links
-- The provider has just created remote records ($4) that these links still claim: they point
-- into a remote side that was reset (a sandbox reset), where the ids started again. They let
-- go of the id, say why, and are sent again (as creates) on their next run.
UPDATE entity_links SET
    remote_id = NULL, remote_version = NULL, content_hash = NULL,
    state = CASE WHEN state IN ('deleted', 'archived') THEN state ELSE 'pending' END,
    last_error = $5, created_at = now(), updated_at = now()
WHERE venue_id = $1::uuid AND provider = $2 AND entity_type = $3
  AND remote_id = ANY($4::text[])

-- name: sync_state
SELECT watermark_at, last_full_at, last_pull_at FROM sync_state
WHERE venue_id = $1::uuid AND provider = $2 AND entity_type = $3

-- name: save_sync_state
INSERT INTO sync_state AS s (venue_id, provider, entity_type, watermark_at, last_full_at,
                             last_pull_at, last_run_at, updated_at)
VALUES ($1::uuid, $2, $3, $4, $5, $6, now(), now())
ON CONFLICT (venue_id, provider, entity_type) DO UPDATE SET
    watermark_at = COALESCE(EXCLUDED.watermark_at, s.watermark_at),
    last_full_at = COALESCE(EXCLUDED.last_full_at, s.last_full_at),
    last_pull_at = COALESCE(EXCLUDED.last_pull_at, s.last_pull_at),
    last_run_at = now(), updated_at = now()

-- name: start_log
INSERT INTO sync_logs (venue_id, provider, job_id, operation, entity_type, status, started_at,
                       details)
VALUES ($1::uuid, $2, $3, $4, $5, 'running', $6, $7)
RETURNING id

-- name: finish_log
UPDATE sync_logs SET
    status = $2, entity_count = $3, success_count = $4, error_count = $5, skip_count = $6,
    duration_ms = $7, api_calls_made = $8, bytes_sent = $9, details = $10, errors = $11,
    completed_at = now()
WHERE id = $1

-- name: add_cost
INSERT INTO integration_costs AS c (venue_id, provider, period_start, period_end, api_calls,
                                    bytes_synced, records_synced)
VALUES ($1::uuid, $2, (now() AT TIME ZONE 'UTC')::date, (now() AT TIME ZONE 'UTC')::date,
        $3, $4, $5)
ON CONFLICT (venue_id, provider, period_start) DO UPDATE SET
    api_calls = c.api_calls + EXCLUDED.api_calls,
    bytes_synced = c.bytes_synced + EXCLUDED.bytes_synced,
    records_synced = c.records_synced + EXCLUDED.records_synced,
    updated_at = now()

-- name: integration_ran
UPDATE integration_configs SET
    last_sync_at = CASE WHEN $3 THEN now() ELSE last_sync_at END,
    failure_count = CASE WHEN $3 THEN 0 ELSE failure_count + 1 END,
    last_error = $4,
    last_error_at = CASE WHEN $4::text IS NULL THEN last_error_at ELSE now() END,
    status = CASE WHEN $3 AND status IN ('error', 'disconnected') THEN 'connected'
                  ELSE status END,
    connected_at = CASE WHEN $3 AND status <> 'connected' THEN now() ELSE connected_at END,
    updated_at = now()
WHERE venue_id = $1::uuid AND provider = $2

-- name: integration_error
UPDATE integration_configs SET
    status = 'error', last_error = $3, last_error_at = now(),
    failure_count = failure_count + 1, updated_at = now()
WHERE venue_id = $1::uuid AND provider = $2

-- name: insert_inbound
INSERT INTO inbound_changes (venue_id, provider, entity_type, remote_id, local_id, change,
                             payload, source, dedupe_key, occurred_at, fields)
SELECT $1::uuid, $2, $3, u.remote_id,
       (SELECT l.local_id FROM entity_links l
        WHERE l.venue_id = $1::uuid AND l.provider = $2 AND l.entity_type = $3
          AND l.remote_id = u.remote_id),
       u.change, u.payload::jsonb, 'pull', u.dedupe_key, u.occurred_at, u.fields::jsonb
FROM unnest($4::text[], $5::text[], $6::text[], $7::text[], $8::timestamptz[], $9::text[])
     AS u(remote_id, change, payload, dedupe_key, occurred_at, fields)
ON CONFLICT (provider, dedupe_key) DO NOTHING

-- name: health_due
-- Enabled integrations, connected or managed by config alike, whose health was never
-- checked or not within $1 seconds: the least recently checked first, at most $2.
SELECT venue_id::text AS venue_id, provider, health_status, status, options, environment
FROM integration_configs
WHERE enabled AND status <> 'suspended'
  AND (health_checked_at IS NULL OR health_checked_at < now() - make_interval(secs => $1))
ORDER BY health_checked_at NULLS FIRST, venue_id, provider
LIMIT $2

-- name: stats_24h
SELECT count(*)::int AS syncs,
       count(*) FILTER (WHERE status IN ('completed', 'partial'))::int AS successes,
       count(*) FILTER (WHERE status = 'failed')::int AS failures,
       COALESCE(avg(duration_ms), 0)::float8 AS avg_ms,
       COALESCE(sum(api_calls_made), 0)::int AS api_calls,
       max(completed_at) FILTER (WHERE status IN ('completed', 'partial')) AS last_success_at,
       max(completed_at) FILTER (WHERE status = 'failed') AS last_failure_at
FROM sync_logs
WHERE venue_id = $1::uuid AND provider = $2 AND started_at >= now() - interval '24 hours'
  AND status <> 'running'

-- name: queue_depth
SELECT count(*)::int AS depth, min(queued_at) AS oldest
FROM sync_queue
WHERE venue_id = $1::uuid AND provider = $2 AND status = 'pending'

-- name: save_health
INSERT INTO integration_health AS h (venue_id, provider, status, success_rate,
    average_sync_time_ms, last_success_at, last_failure_at, sync_count_24h,
    success_count_24h, failure_count_24h, api_calls_24h, queue_depth, oldest_queue_item_at,
    connection_ok, calculated_at)
VALUES ($1::uuid, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, now())
ON CONFLICT (venue_id, provider) DO UPDATE SET
    status = EXCLUDED.status, success_rate = EXCLUDED.success_rate,
    average_sync_time_ms = EXCLUDED.average_sync_time_ms,
    last_success_at = COALESCE(EXCLUDED.last_success_at, h.last_success_at),
    last_failure_at = COALESCE(EXCLUDED.last_failure_at, h.last_failure_at),
    sync_count_24h = EXCLUDED.sync_count_24h, success_count_24h = EXCLUDED.success_count_24h,
    failure_count_24h = EXCLUDED.failure_count_24h, api_calls_24h = EXCLUDED.api_calls_24h,
    queue_depth = EXCLUDED.queue_depth, oldest_queue_item_at = EXCLUDED.oldest_queue_item_at,
    connection_ok = COALESCE(EXCLUDED.connection_ok, h.connection_ok),
    calculated_at = now()

-- name: set_health_status
UPDATE integration_configs
SET health_status = $3, health_checked_at = now(),
    last_error = COALESCE($4, last_error), updated_at = now()
WHERE venue_id = $1::uuid AND provider = $2

-- name: status_rows
SELECT c.venue_id::text AS venue_id, c.venue_name, c.provider, c.enabled, c.status,
       c.health_status, c.last_sync_at, c.last_error, c.failure_count,
       c.paused_at, c.paused_by, c.pause_reason,
       h.success_rate, h.queue_depth AS health_queue_depth,
       (SELECT count(*) FROM sync_queue q
        WHERE q.venue_id = c.venue_id AND q.provider = c.provider
          AND q.status = 'pending')::int AS queue_depth,
       (SELECT s.status FROM sync_logs s
        WHERE s.venue_id = c.venue_id AND s.provider = c.provider
        ORDER BY s.started_at DESC LIMIT 1) AS last_run_status
FROM integration_configs c
LEFT JOIN integration_health h ON h.venue_id = c.venue_id AND h.provider = c.provider
WHERE $1::uuid IS NULL OR c.venue_id = $1::uuid
ORDER BY c.venue_name NULLS LAST, c.venue_id, c.provider

-- name: consent_holds_for
-- Standing consent withdrawals of these local records (by the link's remote id, or the
-- local id the hold learnt).
SELECT u.local_id, h.remote_id, h.platform_opt_in
FROM unnest($4::text[]) AS u(local_id)
JOIN entity_links l
  ON l.venue_id = $1::uuid AND l.provider = $2 AND l.entity_type = $3
 AND l.local_id = u.local_id
JOIN consent_holds h
  ON h.venue_id = l.venue_id AND h.provider = l.provider AND h.entity_type = l.entity_type
 AND h.remote_id = l.remote_id
WHERE h.state = 'withdrawn' AND h.lifted_at IS NULL
UNION
SELECT h.local_id, h.remote_id, h.platform_opt_in
FROM consent_holds h
WHERE h.venue_id = $1::uuid AND h.provider = $2 AND h.entity_type = $3
  AND h.local_id = ANY($4::text[]) AND h.state = 'withdrawn' AND h.lifted_at IS NULL

-- name: consent_seen
-- The platform's opt-in of held records as this run read it.
UPDATE consent_holds h SET platform_opt_in = u.opt_in, updated_at = now()
FROM unnest($4::text[], $5::boolean[]) AS u(remote_id, opt_in)
WHERE h.venue_id = $1::uuid AND h.provider = $2 AND h.entity_type = $3
  AND h.remote_id = u.remote_id AND h.state = 'withdrawn' AND h.lifted_at IS NULL

-- name: consent_lifted
-- The platform opted these people in again after the withdrawal (its opt-in went from false
-- to true): pushes may subscribe them again.
UPDATE consent_holds SET lifted_at = now(), updated_at = now(),
       lifted_reason = 'the platform opted them in again after the withdrawal'
WHERE venue_id = $1::uuid AND provider = $2 AND entity_type = $3
  AND remote_id = ANY($4::text[]) AND state = 'withdrawn' AND lifted_at IS NULL
