-- Inbound processing (daemon/inbound/processor.py) and its commands (daemon/commands/inbound.py).

-- name: claim
-- The next due change (of one venue and/or provider when given), locked for this processor;
-- changes other processors hold are skipped, so each is processed once; entity types in $4
-- are left for another pass.
SELECT * FROM inbound_changes
 WHERE status IN ('pending', 'failed') AND next_attempt_at <= now()
   AND ($1::uuid IS NULL OR venue_id = $1::uuid) AND ($2::text IS NULL OR provider = $2)
   AND NOT (id = ANY ($3::bigint[])) AND NOT (entity_type = ANY ($4::text[]))
 ORDER BY id
 LIMIT 1
   FOR UPDATE SKIP LOCKED

-- name: claim_one
SELECT * FROM inbound_changes WHERE id = $1 FOR UPDATE NOWAIT

-- name: record_lock
-- Changes of one remote record are decided one at a time, whichever processor holds them.
SELECT pg_advisory_xact_lock(hashtextextended($1, 7))

-- name: integration
SELECT * FROM integration_configs WHERE venue_id = $1::uuid AND provider = $2

-- name: link_by_remote
SELECT local_id, remote_id, content_hash, state, pushed_values FROM entity_links
 WHERE venue_id = $1::uuid AND provider = $2 AND entity_type = $3 AND remote_id = $4

-- name: newer_change
-- A later change of the same record, still to be processed, that carries its values.
SELECT id FROM inbound_changes
 WHERE venue_id = $1::uuid AND provider = $2 AND entity_type = $3 AND remote_id = $4
   AND status IN ('pending', 'failed') AND fields IS NOT NULL AND id <> $6
   AND coalesce(occurred_at, received_at) > $5
 ORDER BY coalesce(occurred_at, received_at) DESC, id DESC
 LIMIT 1

-- name: record_state
SELECT changed_at, change_id FROM inbound_record_state
 WHERE venue_id = $1::uuid AND provider = $2 AND entity_type = $3 AND remote_id = $4

-- name: save_record_state
INSERT INTO inbound_record_state AS s (venue_id, provider, entity_type, remote_id, changed_at,
                                       change_id)
VALUES ($1::uuid, $2, $3, $4, $5, $6)
ON CONFLICT (venue_id, provider, entity_type, remote_id) DO UPDATE SET
    changed_at = EXCLUDED.changed_at, change_id = EXCLUDED.change_id, updated_at = now()
 WHERE s.changed_at <= EXCLUDED.changed_at

-- name: field_writes
SELECT field, value, changed_at FROM inbound_field_writes
 WHERE venue_id = $1::uuid AND entity_type = $2 AND local_id = $3

-- name: save_field_writes
INSERT INTO inbound_field_writes AS w (venue_id, entity_type, local_id, field, value,
                                       changed_at, provider, change_id)
SELECT $1::uuid, $2, $3, u.field, u.value::jsonb, $6, $7, $8
  FROM unnest($4::text[], $5::text[]) AS u(field, value)
ON CONFLICT (venue_id, entity_type, local_id, field) DO UPDATE SET
    value = EXCLUDED.value, changed_at = EXCLUDED.changed_at, provider = EXCLUDED.provider,
    change_id = EXCLUDED.change_id, written_at = now()

-- name: row_write
SELECT written_version, platform_changed_at FROM inbound_row_writes
 WHERE venue_id = $1::uuid AND entity_type = $2 AND local_id = $3

-- name: save_row_write
INSERT INTO inbound_row_writes AS r (venue_id, entity_type, local_id, written_version,
                                     platform_changed_at)
VALUES ($1::uuid, $2, $3, $4, $5)
ON CONFLICT (venue_id, entity_type, local_id) DO UPDATE SET
    written_version = EXCLUDED.written_version,
    platform_changed_at = EXCLUDED.platform_changed_at

-- name: link_took_values
-- The origin provider holds the values just written: they join its baseline, and its link's
-- digest becomes the one of the new row when the provider was in step before ($6, else kept).
UPDATE entity_links SET
    pushed_values = coalesce(pushed_values, '{}'::jsonb) || $5::jsonb,
    content_hash = coalesce($6, content_hash), updated_at = now()
 WHERE venue_id = $1::uuid AND provider = $2 AND entity_type = $3 AND local_id = $4

-- name: link_resend
-- The provider holds a value the platform overrode: its record is sent again next run.
UPDATE entity_links SET
    state = 'pending', content_hash = NULL,
    last_error = $5, updated_at = now()
 WHERE venue_id = $1::uuid AND provider = $2 AND entity_type = $3 AND local_id = $4
   AND remote_id IS NOT NULL AND state IN ('synced', 'pending', 'failed')

-- name: hold_local
UPDATE consent_holds SET local_id = $5, updated_at = now()
 WHERE venue_id = $1::uuid AND provider = $2 AND entity_type = $3 AND remote_id = $4
   AND local_id IS DISTINCT FROM $5

-- name: hold_seen
-- syncd wrote the platform's opt-in ($5) while the hold stands.
UPDATE consent_holds SET platform_opt_in = $5, updated_at = now()
 WHERE venue_id = $1::uuid AND provider = $2 AND entity_type = $3 AND remote_id = $4
   AND state = 'withdrawn' AND lifted_at IS NULL

-- name: settle
UPDATE inbound_changes SET
    status = $2, reason_code = $3, reason = $4, outcome = $5,
    local_id = coalesce($6, local_id), attempts = attempts + $7, next_attempt_at = $8,
    processed_at = CASE WHEN $2 IN ('applied', 'ignored', 'dead_letter') THEN now() END,
    decided_by = $9
 WHERE id = $1

-- name: list
SELECT id, venue_id, provider, entity_type, remote_id, local_id, change, source, status,
       reason_code, reason, attempts, occurred_at, received_at, processed_at
  FROM inbound_changes
 WHERE ($1::text IS NULL OR status = $1) AND ($2::uuid IS NULL OR venue_id = $2::uuid)
   AND ($3::text IS NULL OR provider = $3) AND ($4::bigint IS NULL OR id < $4)
 ORDER BY id DESC
 LIMIT $5

-- name: show
SELECT * FROM inbound_changes WHERE id = $1

-- name: requeue
-- An operator asks for a change to be processed again now.
UPDATE inbound_changes SET status = 'pending', next_attempt_at = now(), attempts = 0,
       processed_at = NULL
 WHERE id = $1 AND status <> 'applied'
RETURNING id

-- name: operator_ignore
UPDATE inbound_changes SET status = 'ignored', reason_code = 'operator', reason = $2,
       decided_by = $3, processed_at = now()
 WHERE id = $1 AND status <> 'applied'
RETURNING id

-- name: counts
SELECT status, count(*)::int AS n FROM inbound_changes GROUP BY status

-- name: api_list
-- The admin API's view: changes of the venues the caller may see ($1 NULL: every venue).
SELECT id, venue_id, provider, entity_type, remote_id, local_id, change, source, status,
       reason_code, reason, attempts, occurred_at, received_at, processed_at
  FROM inbound_changes
 WHERE ($1::uuid[] IS NULL OR venue_id = ANY ($1::uuid[]))
   AND ($2::text IS NULL OR provider = $2)
   AND ($3::text IS NULL OR status = $3)
 ORDER BY id DESC
 LIMIT $4
