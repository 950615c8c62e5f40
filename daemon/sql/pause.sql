-- Pausing and resuming an integration (daemon/pause.py;
-- migrations/0012_pause_and_status_page.sql).
-- Each locks the row first, so "changed" says whether this call (and not a racing one) made
-- the change; pausing a paused integration keeps who paused it, when and why.

-- name: find
SELECT venue_id, venue_name, provider
  FROM integration_configs
 WHERE (venue_id::text = $1 OR venue_name = $1) AND provider = $2
 ORDER BY venue_id::text = $1 DESC
 LIMIT 1

-- name: pause
WITH before AS (
    SELECT id, paused_at FROM integration_configs
     WHERE venue_id = $1::uuid AND provider = $2
       FOR UPDATE
)
UPDATE integration_configs c
   SET paused_at = coalesce(before.paused_at, now()),
       paused_by = CASE WHEN before.paused_at IS NULL THEN $3 ELSE c.paused_by END,
       pause_reason = CASE WHEN before.paused_at IS NULL THEN $4 ELSE c.pause_reason END,
       updated_at = CASE WHEN before.paused_at IS NULL THEN now() ELSE c.updated_at END
  FROM before
 WHERE c.id = before.id
RETURNING c.venue_id, c.venue_name, c.provider, c.paused_at, c.paused_by, c.pause_reason,
          before.paused_at IS NULL AS changed

-- name: resume
WITH before AS (
    SELECT id, paused_at FROM integration_configs
     WHERE venue_id = $1::uuid AND provider = $2
       FOR UPDATE
)
UPDATE integration_configs c
   SET paused_at = NULL, paused_by = NULL, pause_reason = NULL,
       updated_at = CASE WHEN before.paused_at IS NULL THEN c.updated_at ELSE now() END
  FROM before
 WHERE c.id = before.id
RETURNING c.venue_id, c.venue_name, c.provider, c.paused_at, c.paused_by, c.pause_reason,
          before.paused_at IS NOT NULL AS changed

-- name: wake_workers
SELECT pg_notify('syncd_queue', '')

-- name: pending_jobs
SELECT count(*)::int FROM sync_queue
 WHERE venue_id = $1::uuid AND provider = $2 AND status = 'pending'
