-- Queue write cost. Every change of a job's status moves the row to a new version (status is
-- in index predicates, so no update is HOT), and each new version is entered in every index
-- whose predicate it meets. Indexes that held every version of every row are narrowed to the
-- rows their queries look for:
--   * idempotency keys: only rows that have one (most jobs have none);
--   * lease expiry: dropped; the reclaim scans running rows through sync_queue_one_running,
--     and running rows are at most the workers' combined concurrency;
--   * (venue, provider, status): replaced by (venue, provider) over pending rows, the only
--     rows its readers (queue depth per integration, `syncd status`) count.
-- A sync job's life (enqueue, claim, complete) now writes 8 index entries instead of 14.

ALTER TABLE sync_queue DROP CONSTRAINT sync_queue_idempotency_key_key;
CREATE UNIQUE INDEX sync_queue_idempotency ON sync_queue (idempotency_key)
    WHERE idempotency_key IS NOT NULL;
DROP INDEX sync_queue_leases;
DROP INDEX sync_queue_venue;
CREATE INDEX sync_queue_pending_integration ON sync_queue (venue_id, provider)
    WHERE status = 'pending';

-- The twin merge names the coalesced operations, so its DELETE can use the coalescing index.
CREATE OR REPLACE FUNCTION syncd_queue_merge_twin() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    v_lane text;
BEGIN
    DELETE FROM sync_queue t
     WHERE t.status = 'pending' AND t.id <> NEW.id
       AND t.operation IN ('sync', 'reconcile')
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

-- An integration as one value, for testing candidates against the running ones.
CREATE FUNCTION syncd_integration_key(p_venue_id uuid, p_provider text) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT p_venue_id::text || '/' || p_provider
$$;

-- The integrations with a running job, as of the calling statement's snapshot.
CREATE FUNCTION syncd_running_integrations() RETURNS text[]
LANGUAGE sql STABLE AS $$
    SELECT coalesce(array_agg(syncd_integration_key(venue_id, provider)), '{}')
      FROM sync_queue WHERE status = 'processing'
$$;

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
CREATE OR REPLACE FUNCTION syncd_claim_jobs(
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
-- Which integrations are running is read once per check into an array of keys, and
-- candidates are tested against it (hashed: plans are made per call, with the array as a
-- constant). A join against the running rows leaves the plan to statistics, and statistics
-- taken while nothing ran (autovacuum's, a deploy's) make a full pass over them per
-- candidate look free; under load that pass also meets the index entries of jobs finished
-- moments ago, the claim slows, holds back the cleanup horizon, and the next pass is longer
-- still (with two worker processes, one claim took 28 s).
SET plan_cache_mode = force_custom_plan
AS $$
DECLARE
    v_chosen bigint[];
    v_ids bigint[];
    v_tried bigint[] := '{}';
    v_want integer;
    v_got integer;
    v_claimed integer := 0;
    v_round integer;
    v_window bigint;
    v_running text[];
BEGIN
    -- Jobs this worker finished since its last claim are recorded first, in the same
    -- transaction (one commit for both), fenced by their lease tokens. Their integrations
    -- are free for this very claim: the statements below take new snapshots.
    --
    -- Every claim draws a fresh random token, so a row whose token is in p_done_tokens holds
    -- the very lease this worker was given for it: matching ids and tokens as two sets is
    -- the same test as matching them pair by pair, and plans as one scan with a filter
    -- instead of a join that reruns unnest() once per running row.
    IF p_done_ids IS NOT NULL THEN
        UPDATE sync_queue q
           SET status = 'completed', completed_at = now(),
               lease_owner = NULL, lease_token = NULL, lease_expires_at = NULL
         WHERE q.id = ANY (p_done_ids) AND q.lease_token = ANY (p_done_tokens)
           AND q.status = 'processing';
    END IF;
    -- Up to four rounds: another one when an integration was being claimed by a racing
    -- claimer, or a lane's window was full of one integration's jobs (see the exit test).
    FOR v_round IN 1..4 LOOP
        v_want := p_limit - v_claimed;
        EXIT WHEN v_want <= 0;

        -- Each lane's next due jobs are locked as they are found, skipping those another
        -- claimer holds, so racing claimers take disjoint rows; then the lanes' candidates
        -- get their virtual times (the k-th of a lane: pass + k / weight) and the smallest
        -- win, one per integration. Rows locked but not chosen are free again at commit.
        v_running := syncd_running_integrations();

        WITH lanes AS (
            SELECT l.lane, l.pass, l.weight
              FROM unnest(p_lanes, p_passes, p_weights) AS l(lane, pass, weight)
        ), cand AS (
            SELECT c.id, c.venue_id, c.provider, lanes.lane,
                   lanes.pass + (row_number() OVER (PARTITION BY lanes.lane
                                                    ORDER BY c.run_at, c.id)) / lanes.weight
                       AS vtime
              FROM lanes
              CROSS JOIN LATERAL (
                  SELECT q.id, q.venue_id, q.provider, q.run_at
                    FROM sync_queue q
                   WHERE q.status = 'pending' AND q.lane = lanes.lane
                     AND q.run_at <= now() AND q.expires_at > now()
                     AND q.id <> ALL (v_tried)
                     AND syncd_integration_key(q.venue_id, q.provider) <> ALL (v_running)
                   ORDER BY q.run_at, q.id
                   LIMIT v_want
                     FOR UPDATE OF q SKIP LOCKED
              ) c
        ), one_each AS (
            SELECT DISTINCT ON (venue_id, provider) id, venue_id, provider, lane, vtime
              FROM cand ORDER BY venue_id, provider, vtime, syncd_lane_rank(lane)
        ), chosen AS (
            -- Equal virtual times go to the higher lane.
            SELECT id, venue_id, provider FROM one_each
             ORDER BY vtime, syncd_lane_rank(lane), id LIMIT v_want
        )
        -- Each chosen job's integration lock (a claimer that holds it is claiming that
        -- integration right now; this claim's own rounds never meet an integration twice:
        -- the rows claimed in an earlier round are running by now, and the running check
        -- leaves them out). v_window: the most candidates one lane gave; a lane that filled
        -- its window may have more due jobs behind it.
        SELECT (SELECT array_agg(id) FROM chosen),
               (SELECT array_agg(id) FROM chosen
                 WHERE pg_try_advisory_xact_lock(
                           1937339236, hashtext(syncd_integration_key(venue_id, provider)))),
               (SELECT coalesce(max(n), 0)
                  FROM (SELECT count(*) AS n FROM cand GROUP BY lane) AS per_lane)
          INTO v_chosen, v_ids, v_window;

        EXIT WHEN v_chosen IS NULL;
        v_tried := v_tried || v_chosen;

        IF v_ids IS NOT NULL THEN
            -- A new statement: a new snapshot, taken after the advisory locks, so a claim
            -- another worker committed meanwhile is seen here.
            v_running := syncd_running_integrations();
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
               AND syncd_integration_key(q.venue_id, q.provider) <> ALL (v_running)
            RETURNING q.*;
            GET DIAGNOSTICS v_got = ROW_COUNT;
            v_claimed := v_claimed + v_got;
        END IF;

        -- Another round only when it can find more: an integration was being claimed by
        -- another claimer, or a full window held several jobs of one integration (one runs
        -- at a time, so the rest made way; the next round looks past them, the integration
        -- now running).
        EXIT WHEN coalesce(cardinality(v_ids), 0) = cardinality(v_chosen)
              AND (cardinality(v_chosen) = v_want OR v_window < v_want);
    END LOOP;
END
$$;
