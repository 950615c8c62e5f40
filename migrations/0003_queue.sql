-- The queue's working parts: coalescing of duplicate pending syncs, a wake-up NOTIFY for idle
-- workers, a twin-merging trigger so that a job returning to pending never collides with the
-- coalescing index, and the batch claim as one server-side function (one round trip).

-- Lanes in priority order, for "keep the higher lane" when two jobs merge.
CREATE FUNCTION syncd_lane_rank(lane text) RETURNS integer
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE lane WHEN 'CRITICAL' THEN 0 WHEN 'HIGH' THEN 1 WHEN 'NORMAL' THEN 2 ELSE 3 END
$$;

-- Duplicate pending syncs of one integration and entity coalesce into one row: a sync reads
-- current state when it runs, so a second pending copy would only repeat the work. Jobs that
-- carry their own changes (create, update, delete) are never coalesced.
CREATE UNIQUE INDEX sync_queue_coalesce
    ON sync_queue (venue_id, provider, entity_type, operation, coalesce(entity_id, ''))
    WHERE status = 'pending' AND operation IN ('sync', 'reconcile');

-- Dead letters listed newest first.
CREATE INDEX sync_queue_dead ON sync_queue (completed_at DESC, id) WHERE status = 'dead_letter';

-- Wake idle workers when work is added: one notification per inserting statement (Postgres
-- folds identical notifications of one transaction into one). Workers also poll, so a lost
-- notification only delays a job by the poll interval.
CREATE FUNCTION syncd_queue_notify() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('syncd_queue', '');
    RETURN NULL;
END
$$;
CREATE TRIGGER sync_queue_notify AFTER INSERT ON sync_queue
    FOR EACH STATEMENT EXECUTE FUNCTION syncd_queue_notify();

-- A job going back to pending (retry, lease reclaimed, released at shutdown, replayed from the
-- dead-letter queue) while a twin was enqueued meanwhile: the twin is folded into it (the
-- returning job keeps its history and backoff, and takes the higher lane of the two), so the
-- coalescing index never rejects the transition.
CREATE FUNCTION syncd_queue_merge_twin() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    v_lane text;
BEGIN
    DELETE FROM sync_queue t
     WHERE t.status = 'pending' AND t.id <> NEW.id
       AND t.venue_id = NEW.venue_id AND t.provider = NEW.provider
       AND t.entity_type = NEW.entity_type AND t.operation = NEW.operation
       AND coalesce(t.entity_id, '') = coalesce(NEW.entity_id, '')
    RETURNING t.lane INTO v_lane;
    IF v_lane IS NOT NULL AND syncd_lane_rank(v_lane) < syncd_lane_rank(NEW.lane) THEN
        NEW.lane := v_lane;
    END IF;
    RETURN NEW;
END
$$;
-- Fired by updates that set run_at, as every return to pending does (retry, reclaim, release,
-- replay) and claims and completions do not: those, the hot path, skip the trigger entirely.
CREATE TRIGGER sync_queue_merge_twin BEFORE UPDATE OF run_at ON sync_queue
    FOR EACH ROW
    WHEN (NEW.status = 'pending' AND OLD.status <> 'pending'
          AND NEW.operation IN ('sync', 'reconcile'))
    EXECUTE FUNCTION syncd_queue_merge_twin();

-- Record the jobs in p_done_ids as completed, then claim up to p_limit due jobs for p_owner,
-- lanes served by weight.
--
-- Each lane's k-th due job gets the virtual time pass + k / weight (the caller keeps each
-- lane's pass between calls), and the batch takes the smallest virtual times: under load
-- every lane gets its weighted share, and a lane with nothing due leaves its share to the
-- others. At most one job per (venue, provider) runs: candidates whose integration has a
-- running job are left out, and racing claimers are kept apart by a per-integration advisory
-- transaction lock taken before a fresh snapshot re-checks for a running job, so the unique
-- index sync_queue_one_running is never what stops a claim.
CREATE FUNCTION syncd_claim_jobs(
    p_owner text,
    p_lease_seconds double precision,
    p_limit integer,
    p_lanes text[],
    p_passes double precision[],
    p_weights double precision[],
    p_done_ids bigint[] DEFAULT NULL,
    p_done_tokens uuid[] DEFAULT NULL
) RETURNS SETOF sync_queue
LANGUAGE plpgsql VOLATILE
-- The running-job check must probe sync_queue_one_running per candidate (or hash it), never
-- rescan a materialized copy of every running row per candidate: statistics taken while
-- nothing ran make that plan look free, and it grows with the number of running jobs.
SET enable_material = off
AS $$
DECLARE
    v_chosen bigint[];
    v_ids bigint[];
BEGIN
    -- Jobs this worker finished since its last claim are recorded first, in the same
    -- transaction (one commit for both), fenced by their lease tokens. Their integrations
    -- are free for this very claim: the statements below take new snapshots.
    IF p_done_ids IS NOT NULL THEN
        UPDATE sync_queue q
           SET status = 'completed', completed_at = now(),
               lease_owner = NULL, lease_token = NULL, lease_expires_at = NULL
          FROM unnest(p_done_ids, p_done_tokens) AS d(id, token)
         WHERE q.id = d.id AND q.lease_token = d.token AND q.status = 'processing';
    END IF;
    IF p_limit <= 0 THEN
        RETURN;
    END IF;

    WITH lanes AS (
        SELECT l.lane, l.pass, l.weight
          FROM unnest(p_lanes, p_passes, p_weights) AS l(lane, pass, weight)
    ), cand AS (
        SELECT c.id, c.venue_id, c.provider, lanes.lane, lanes.pass + c.k / lanes.weight AS vtime
          FROM lanes
          CROSS JOIN LATERAL (
              SELECT q.id, q.venue_id, q.provider,
                     row_number() OVER (ORDER BY q.run_at, q.id) AS k
                FROM sync_queue q
               WHERE q.status = 'pending' AND q.lane = lanes.lane
                 AND q.run_at <= now() AND q.expires_at > now()
                 AND NOT EXISTS (
                     SELECT 1 FROM sync_queue r
                      WHERE r.status = 'processing'
                        AND r.venue_id = q.venue_id AND r.provider = q.provider)
               ORDER BY q.run_at, q.id
               LIMIT p_limit * 2
          ) c
    ), one_each AS (
        SELECT DISTINCT ON (venue_id, provider) id, lane, vtime
          FROM cand ORDER BY venue_id, provider, vtime, syncd_lane_rank(lane)
    )
    -- Equal virtual times go to the higher lane.
    SELECT array_agg(id) INTO v_chosen
      FROM (SELECT id FROM one_each
             ORDER BY vtime, syncd_lane_rank(lane), id LIMIT p_limit) AS chosen;

    IF v_chosen IS NULL THEN
        RETURN;
    END IF;

    -- Lock the chosen rows, skipping those another claimer holds, then take each one's
    -- integration lock (a claimer that holds it is claiming that integration right now).
    WITH locked AS MATERIALIZED (
        SELECT q.id, q.venue_id, q.provider
          FROM sync_queue q
         WHERE q.id = ANY (v_chosen) AND q.status = 'pending'
           FOR UPDATE SKIP LOCKED
    )
    SELECT array_agg(id) INTO v_ids
      FROM locked
     WHERE pg_try_advisory_xact_lock(1937339236, hashtext(venue_id::text || '/' || provider));

    IF v_ids IS NULL THEN
        RETURN;
    END IF;

    -- A new statement: a new snapshot, taken after the advisory locks, so a claim another
    -- worker committed meanwhile is seen here.
    RETURN QUERY
    UPDATE sync_queue q
       SET status = 'processing',
           attempts = q.attempts + 1,
           started_at = now(),
           lease_owner = p_owner,
           lease_token = gen_random_uuid(),
           lease_expires_at = now() + make_interval(secs => p_lease_seconds)
     WHERE q.id = ANY (v_ids)
       AND q.status = 'pending'
       AND NOT EXISTS (
           SELECT 1 FROM sync_queue r
            WHERE r.status = 'processing'
              AND r.venue_id = q.venue_id AND r.provider = q.provider)
    RETURNING q.*;
END
$$;
