-- The admin API (daemon/http/api.py). $1 is the venues a caller may see, NULL for every venue.

-- name: integrations
SELECT venue_id, venue_name, provider, enabled, environment, status, health_status,
       last_sync_at, last_error, last_error_at, failure_count, paused_at, paused_by,
       pause_reason
  FROM integration_configs
 WHERE ($1::uuid[] IS NULL OR venue_id = ANY ($1::uuid[]))
   AND ($2::uuid IS NULL OR venue_id = $2::uuid)
 ORDER BY venue_name NULLS LAST, venue_id, provider

-- name: integration
SELECT venue_id, venue_name, provider, enabled, environment, status, health_status,
       last_sync_at, last_error, last_error_at, failure_count, paused_at, paused_by,
       pause_reason
  FROM integration_configs
 WHERE venue_id = $1::uuid AND provider = $2

-- name: recent_syncs
SELECT id, job_id, operation, entity_type, status, success_count, error_count, skip_count,
       duration_ms, api_calls_made, errors, started_at, completed_at
  FROM sync_logs
 WHERE venue_id = $1::uuid AND provider = $2
 ORDER BY started_at DESC
 LIMIT $3

-- name: webhook_events
SELECT id, provider, venue_id, event_type, external_id, status, error, retry_count,
       received_at, processed_at
  FROM integration_webhooks
 WHERE ($1::uuid[] IS NULL OR venue_id = ANY ($1::uuid[]))
   AND ($2::text IS NULL OR provider = $2)
   AND ($3::text IS NULL OR status = $3)
 ORDER BY received_at DESC, id
 LIMIT $4

-- name: dead_letters
SELECT id, venue_id, provider, entity_type, operation, lane, attempts, max_attempts,
       error_kind, last_error, completed_at
  FROM sync_queue
 WHERE status = 'dead_letter'
   AND ($1::uuid[] IS NULL OR venue_id = ANY ($1::uuid[]))
   AND ($2::text IS NULL OR provider = $2)
 ORDER BY completed_at DESC, id DESC
 LIMIT $3

-- name: dead_letter
SELECT id, venue_id FROM sync_queue WHERE id = $1 AND status = 'dead_letter'
