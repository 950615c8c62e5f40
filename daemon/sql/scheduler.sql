-- Queries of the cron scheduler (daemon/scheduler/).

-- name: try_leader
SELECT pg_try_advisory_lock($1)

-- name: resign
SELECT pg_advisory_unlock($1)

-- name: schedules
-- A paused integration is left out (daemon/pause.py): after its resume, the latest tick it
-- missed fires once, as after any downtime.
SELECT id, venue_id, provider, timezone, schedules
  FROM integration_configs
 WHERE enabled AND paused_at IS NULL AND schedules <> '{}'::jsonb
 ORDER BY id

-- name: claim_tick
-- Record a tick as fired. Returns the tick only for the first caller, and never for a tick
-- older than one already fired (a later tick supersedes earlier ones).
INSERT INTO schedule_ticks (integration_id, entity_type, tick)
SELECT $1, $2, $3
 WHERE NOT EXISTS (
     SELECT 1 FROM schedule_ticks
      WHERE integration_id = $1 AND entity_type = $2 AND tick >= $3)
ON CONFLICT DO NOTHING
RETURNING tick

-- name: set_tick_job
UPDATE schedule_ticks SET job_id = $4
 WHERE integration_id = $1 AND entity_type = $2 AND tick = $3

-- name: prune_ticks
-- Old ticks go, but the newest of each schedule stays: it is what stops a re-fire.
DELETE FROM schedule_ticks t
 WHERE t.fired_at < now() - make_interval(secs => $1)
   AND EXISTS (
       SELECT 1 FROM schedule_ticks n
        WHERE n.integration_id = t.integration_id AND n.entity_type = t.entity_type
          AND n.tick > t.tick)
