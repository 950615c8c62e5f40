-- Queries of the durable queue (daemon/queue/). Claiming is the function syncd_claim_jobs
-- (migrations/0003_queue.sql, last changed in 0005); everything that finishes a job checks the
-- lease token, so a worker that lost its lease changes nothing.
--
-- Lease tokens are fresh random UUIDs, one per claim: a row whose token is among the tokens a
-- worker holds is one of its own leases, so ids and tokens are matched as sets (one scan with
-- a filter) where no per-job values go with them.

-- name: enqueue
INSERT INTO sync_queue (venue_id, provider, operation, entity_type, entity_id, payload,
                        idempotency_key, lane, run_at, max_attempts, correlation_id, expires_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, coalesce($9, now()), $10, $11,
        coalesce($12, coalesce($9, now()) + make_interval(secs => $13)))
ON CONFLICT DO NOTHING
RETURNING id

-- name: coalesce_into_pending
-- A coalesced enqueue: the pending twin takes the higher lane, and the earlier due time
-- unless it is waiting out a retry backoff.
UPDATE sync_queue
   SET lane = CASE WHEN syncd_lane_rank($6) < syncd_lane_rank(lane) THEN $6 ELSE lane END,
       run_at = CASE WHEN attempts = 0 THEN least(run_at, coalesce($7, now())) ELSE run_at END
 WHERE status = 'pending' AND operation IN ('sync', 'reconcile')
   AND venue_id = $1 AND provider = $2 AND entity_type = $3 AND operation = $4
   AND coalesce(entity_id, '') = coalesce($5, '')
   AND (syncd_lane_rank($6) < syncd_lane_rank(lane)
        OR (attempts = 0 AND run_at > coalesce($7, now())))

-- name: enqueue_many
INSERT INTO sync_queue (venue_id, provider, operation, entity_type, entity_id, payload,
                        idempotency_key, lane, run_at, max_attempts, correlation_id, expires_at)
SELECT j.venue_id, j.provider, j.operation, j.entity_type, j.entity_id, j.payload::jsonb,
       j.idempotency_key, j.lane, coalesce(j.run_at, now()), j.max_attempts, j.correlation_id,
       coalesce(j.expires_at, coalesce(j.run_at, now()) + make_interval(secs => $13))
  FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[],
              $7::text[], $8::text[], $9::timestamptz[], $10::integer[], $11::text[],
              $12::timestamptz[])
       WITH ORDINALITY AS j(venue_id, provider, operation, entity_type, entity_id, payload,
                            idempotency_key, lane, run_at, max_attempts, correlation_id,
                            expires_at, n)
 ORDER BY j.n
ON CONFLICT DO NOTHING
RETURNING id

-- name: claim
-- Only the columns a Job is made of (and run_at, for the claim latency): the client decodes
-- every column it is sent, payload's JSON included.
SELECT id, venue_id, provider, entity_type, operation, payload, lane, attempts, max_attempts,
       lease_token, correlation_id, entity_id, run_at
  FROM syncd_claim_jobs($1, $2, $3, $4::text[], $5::float8[], $6::float8[],
                        $7::bigint[], $8::uuid[])

-- name: heartbeat
-- Renew the leases this worker still holds; returns the ids it still holds (the rest were
-- lost). A row locked by its handler's own transaction (assert_lease) is not waited for:
-- that wait would hold up every other job's renewal behind one long transaction. It is
-- held all the same (a reclaim skips locked rows) and reported as held; the next beat after
-- the transaction ends renews it.
WITH mine AS (
    SELECT id FROM sync_queue
     WHERE id = ANY ($1::bigint[]) AND lease_token = ANY ($2::uuid[]) AND status = 'processing'
       FOR UPDATE SKIP LOCKED
), renewed AS (
    UPDATE sync_queue q
       SET lease_expires_at = now() + make_interval(secs => $3)
      FROM mine
     WHERE q.id = mine.id
    RETURNING q.id
)
SELECT id FROM renewed
UNION ALL
SELECT id FROM sync_queue
 WHERE id = ANY ($1::bigint[]) AND lease_token = ANY ($2::uuid[]) AND status = 'processing'
   AND id NOT IN (SELECT id FROM mine)

-- name: assert_lease
-- Inside the handler's transaction: locks the row (a reclaim waits for this transaction) and
-- extends the lease, or returns nothing when the lease is gone.
UPDATE sync_queue
   SET lease_expires_at = greatest(lease_expires_at, now() + make_interval(secs => $3))
 WHERE id = $1 AND lease_token = $2 AND status = 'processing'
RETURNING id

-- name: complete_in_transaction
-- Inside the handler's transaction: the job is completed if and only if that transaction
-- commits, together with whatever else it wrote.
UPDATE sync_queue
   SET status = 'completed', completed_at = now(),
       lease_owner = NULL, lease_token = NULL, lease_expires_at = NULL
 WHERE id = $1 AND lease_token = $2 AND status = 'processing'
RETURNING id

-- name: complete_held
-- The end of a run that held its integration's slot itself (`syncd sync`): fenced by the
-- lease token, so a run whose lease was taken over completes nothing.
UPDATE sync_queue q
   SET status = 'completed', completed_at = now(),
       lease_owner = NULL, lease_token = NULL, lease_expires_at = NULL
 WHERE q.id = $1 AND q.lease_token = $2::uuid AND q.status = 'processing'
RETURNING q.id

-- name: fail_many
-- Not retried: a permanent failure or rejected credentials.
UPDATE sync_queue q
   SET status = 'failed', completed_at = now(), last_error = d.error, error_kind = d.kind,
       error_count = q.error_count + 1,
       lease_owner = NULL, lease_token = NULL, lease_expires_at = NULL
  FROM unnest($1::bigint[], $2::uuid[], $3::text[], $4::text[]) AS d(id, token, error, kind)
 WHERE q.id = d.id AND q.lease_token = d.token AND q.status = 'processing'
RETURNING q.id

-- name: retry_many
-- Back to pending after its backoff, or dead_letter once its attempts are spent.
UPDATE sync_queue q
   SET status = CASE WHEN q.attempts >= q.max_attempts THEN 'dead_letter' ELSE 'pending' END,
       completed_at = CASE WHEN q.attempts >= q.max_attempts THEN now() END,
       run_at = CASE WHEN q.attempts >= q.max_attempts THEN q.run_at
                     ELSE now() + make_interval(secs => d.delay) END,
       last_error = d.error, error_kind = 'retryable', error_count = q.error_count + 1,
       lease_owner = NULL, lease_token = NULL, lease_expires_at = NULL
  FROM unnest($1::bigint[], $2::uuid[], $3::text[], $4::float8[]) AS d(id, token, error, delay)
 WHERE q.id = d.id AND q.lease_token = d.token AND q.status = 'processing'
RETURNING q.id, q.status

-- name: release_many
-- Shutdown: hand the jobs back untouched; the interrupted attempt is not counted.
UPDATE sync_queue q
   SET status = 'pending', run_at = now(), attempts = greatest(q.attempts - 1, 0),
       lease_owner = NULL, lease_token = NULL, lease_expires_at = NULL
 WHERE q.id = ANY ($1::bigint[]) AND q.lease_token = ANY ($2::uuid[]) AND q.status = 'processing'
RETURNING q.id

-- name: reclaim_expired
-- Jobs whose worker stopped renewing its lease (crashed, cut off): retried, or dead-lettered
-- when their attempts are spent. Row locks make this safe to run on every replica at once.
WITH expired AS (
    SELECT id, lease_owner
      FROM sync_queue
     WHERE status = 'processing' AND lease_expires_at < now()
     ORDER BY lease_expires_at
     LIMIT $1
       FOR UPDATE SKIP LOCKED
)
UPDATE sync_queue q
   SET status = CASE WHEN q.attempts >= q.max_attempts THEN 'dead_letter' ELSE 'pending' END,
       completed_at = CASE WHEN q.attempts >= q.max_attempts THEN now() END,
       run_at = now(),
       last_error = 'lease expired: worker ' || coalesce(expired.lease_owner, '?')
                    || ' stopped renewing it',
       error_kind = 'lease', error_count = q.error_count + 1,
       lease_owner = NULL, lease_token = NULL, lease_expires_at = NULL
  FROM expired
 WHERE q.id = expired.id AND q.status = 'processing' AND q.lease_expires_at < now()
RETURNING q.id, q.status, expired.lease_owner

-- name: expire_pending
-- Jobs past their expiry are never run.
WITH gone AS (
    SELECT id FROM sync_queue
     WHERE status = 'pending' AND expires_at <= now()
     LIMIT $1
       FOR UPDATE SKIP LOCKED
)
UPDATE sync_queue q
   SET status = 'failed', completed_at = now(), error_kind = 'expired',
       last_error = 'expired before it could run'
  FROM gone
 WHERE q.id = gone.id
RETURNING q.id

-- name: notify
SELECT pg_notify('syncd_queue', '')

-- name: next_due
-- When the earliest pending job falls due (NULL: nothing pending).
SELECT min(m.run_at) FROM (
    SELECT (SELECT run_at FROM sync_queue
             WHERE status = 'pending' AND lane = l.lane
             ORDER BY run_at LIMIT 1) AS run_at
      FROM unnest($1::text[]) AS l(lane)
) AS m

-- name: prune_finished
-- Completed and failed rows past the retention period, a batch at a time. Dead letters stay
-- until replayed or purged.
DELETE FROM sync_queue
 WHERE id IN (
     SELECT id FROM sync_queue
      WHERE status IN ('completed', 'failed')
        AND completed_at < now() - make_interval(secs => $1)
      LIMIT $2)

-- name: depth
SELECT lane, status, count(*)::bigint AS jobs
  FROM sync_queue
 GROUP BY lane, status

-- name: active_depth
SELECT lane, status, count(*)::bigint AS jobs
  FROM sync_queue
 WHERE status IN ('pending', 'processing')
 GROUP BY lane, status

-- name: pending_age
SELECT lane,
       extract(epoch FROM now() - min(queued_at))::float8 AS oldest_age_s,
       count(*) FILTER (WHERE run_at <= now())::bigint AS due
  FROM sync_queue
 WHERE status = 'pending'
 GROUP BY lane

-- name: running
SELECT id, venue_id, provider, entity_type, operation, lane, attempts, lease_owner,
       started_at, lease_expires_at
  FROM sync_queue
 WHERE status = 'processing'
 ORDER BY started_at, id
 LIMIT $1

-- name: get_job
SELECT * FROM sync_queue WHERE id = $1

-- name: dlq_list
SELECT id, venue_id, provider, entity_type, operation, lane, attempts, max_attempts,
       error_kind, last_error, completed_at
  FROM sync_queue
 WHERE status = 'dead_letter'
   AND ($1::uuid IS NULL OR venue_id = $1)
   AND ($2::text IS NULL OR provider = $2)
 ORDER BY completed_at DESC, id DESC
 LIMIT $3

-- name: dlq_replay
-- Back to pending with a fresh attempt budget; history (last_error, error_count) is kept.
UPDATE sync_queue
   SET status = 'pending', attempts = 0, run_at = now(), completed_at = NULL,
       expires_at = greatest(expires_at, now() + make_interval(secs => $4))
 WHERE status = 'dead_letter'
   AND ($1::bigint[] IS NULL OR id = ANY ($1))
   AND ($2::uuid IS NULL OR venue_id = $2)
   AND ($3::text IS NULL OR provider = $3)
RETURNING id

-- name: dlq_purge
DELETE FROM sync_queue
 WHERE status = 'dead_letter'
   AND ($1::bigint[] IS NULL OR id = ANY ($1))
   AND ($2::uuid IS NULL OR venue_id = $2)
   AND ($3::text IS NULL OR provider = $3)
   AND ($4::float8 IS NULL OR completed_at < now() - make_interval(secs => $4))
RETURNING id

-- name: lock_integration
-- The per-integration lock a claim takes (syncd_claim_jobs) while it claims that integration;
-- held to the end of the calling transaction.
SELECT pg_advisory_xact_lock(1937339236, hashtext(syncd_integration_key($1, $2)))

-- name: reclaim_integration
-- Before `syncd sync` takes an integration's slot: a running job of it whose lease ran out
-- (its worker or command died) is settled as reclaim_expired settles it.
UPDATE sync_queue q
   SET status = CASE WHEN q.attempts >= q.max_attempts THEN 'dead_letter' ELSE 'pending' END,
       completed_at = CASE WHEN q.attempts >= q.max_attempts THEN now() END,
       run_at = now(),
       last_error = 'lease expired: worker ' || coalesce(q.lease_owner, '?')
                    || ' stopped renewing it',
       error_kind = 'lease', error_count = q.error_count + 1,
       lease_owner = NULL, lease_token = NULL, lease_expires_at = NULL
 WHERE q.status = 'processing' AND q.venue_id = $1 AND q.provider = $2
   AND q.lease_expires_at < now()
RETURNING q.id, q.status

-- name: hold_integration
-- `syncd sync`: take an integration's running slot as a claim takes it (after
-- lock_integration, in the same transaction): a job row that is running from the start,
-- leased to the command. Nothing when a job of the integration is running (the one-running
-- index settles a race). One attempt: a command that dies leaves a dead letter, not a retry.
INSERT INTO sync_queue (venue_id, provider, operation, entity_type, payload, lane, status,
                        attempts, max_attempts, started_at, lease_owner, lease_token,
                        lease_expires_at, correlation_id)
SELECT $1, $2, $3, $4, $5, 'CRITICAL', 'processing', 1, 1, now(), $6, gen_random_uuid(),
       now() + make_interval(secs => $7), $8
 WHERE NOT EXISTS (SELECT 1 FROM sync_queue
                    WHERE status = 'processing' AND venue_id = $1 AND provider = $2)
ON CONFLICT DO NOTHING
RETURNING id, venue_id, provider, entity_type, operation, payload, lane, attempts,
          max_attempts, lease_token, correlation_id, entity_id, run_at

-- name: running_for_integration
SELECT id, lease_owner, started_at FROM sync_queue
 WHERE status = 'processing' AND venue_id = $1 AND provider = $2
