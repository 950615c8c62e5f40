-- The status page (daemon/http/status.py). $1 is the venues the viewer may see, NULL for every
-- venue; jobs of no venue (webhook processing, venue 00000000-...) show only with NULL.

-- name: integrations
SELECT c.venue_id, c.venue_name, c.provider, c.enabled, c.status, c.health_status,
       c.last_sync_at, c.last_error, c.last_error_at, c.failure_count, c.paused_at,
       c.paused_by, c.pause_reason,
       EXISTS (SELECT 1 FROM jsonb_each(c.credentials) e
                WHERE e.value = '"oauth"'::jsonb) AS uses_oauth,
       (SELECT count(*) FROM sync_queue q
         WHERE q.venue_id = c.venue_id AND q.provider = c.provider
           AND q.status = 'pending')::int AS pending,
       (SELECT count(*) FROM sync_queue q
         WHERE q.venue_id = c.venue_id AND q.provider = c.provider
           AND q.status = 'processing')::int AS running,
       count(*) OVER ()::int AS total
  FROM integration_configs c
 WHERE $1::uuid[] IS NULL OR c.venue_id = ANY ($1::uuid[])
 ORDER BY c.venue_name NULLS LAST, c.venue_id, c.provider
 LIMIT $2

-- name: lanes
SELECT q.lane,
       count(*) FILTER (WHERE q.status = 'pending' AND q.run_at <= now())::int AS due,
       count(*) FILTER (WHERE q.status = 'pending' AND q.run_at > now())::int AS later,
       count(*) FILTER (WHERE q.status = 'pending' AND EXISTS (
           SELECT 1 FROM integration_configs c
            WHERE c.venue_id = q.venue_id AND c.provider = q.provider
              AND c.paused_at IS NOT NULL))::int AS held,
       count(*) FILTER (WHERE q.status = 'processing')::int AS running,
       count(*) FILTER (WHERE q.status = 'dead_letter')::int AS dead,
       extract(epoch FROM now() - min(q.run_at)
               FILTER (WHERE q.status = 'pending' AND q.run_at <= now()))::float8
           AS oldest_due_s
  FROM sync_queue q
 WHERE q.status IN ('pending', 'processing', 'dead_letter')
   AND ($1::uuid[] IS NULL OR q.venue_id = ANY ($1::uuid[]))
 GROUP BY q.lane

-- name: recent_syncs
SELECT s.venue_id, c.venue_name, s.provider, s.operation, s.entity_type, s.status,
       s.success_count, s.error_count, s.skip_count, s.duration_ms, s.api_calls_made,
       s.details ->> 'error' AS error, s.errors, s.started_at, s.completed_at
  FROM sync_logs s
  LEFT JOIN integration_configs c ON c.venue_id = s.venue_id AND c.provider = s.provider
 WHERE $1::uuid[] IS NULL OR s.venue_id = ANY ($1::uuid[])
 ORDER BY s.started_at DESC
 LIMIT $2

-- name: failed_syncs_24h
SELECT count(*)::int FROM sync_logs
 WHERE started_at > now() - interval '24 hours' AND status = 'failed'
   AND ($1::uuid[] IS NULL OR venue_id = ANY ($1::uuid[]))

-- name: dead_letters
SELECT q.id, q.venue_id, c.venue_name, q.provider, q.entity_type, q.operation, q.lane,
       q.attempts, q.error_kind, q.last_error, q.completed_at, count(*) OVER ()::int AS total
  FROM sync_queue q
  LEFT JOIN integration_configs c ON c.venue_id = q.venue_id AND c.provider = q.provider
 WHERE q.status = 'dead_letter'
   AND ($1::uuid[] IS NULL OR q.venue_id = ANY ($1::uuid[]))
 ORDER BY q.completed_at DESC NULLS LAST, q.id DESC
 LIMIT $2

-- name: failed_webhooks
SELECT w.provider, w.venue_id, c.venue_name, w.event_type, w.error, w.retry_count,
       w.received_at, count(*) OVER ()::int AS total
  FROM integration_webhooks w
  LEFT JOIN integration_configs c ON c.venue_id = w.venue_id AND c.provider = w.provider
 WHERE w.status = 'failed'
   AND ($1::uuid[] IS NULL OR w.venue_id = ANY ($1::uuid[]))
 ORDER BY w.received_at DESC
 LIMIT $2
