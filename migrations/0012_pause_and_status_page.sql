-- Pausing an integration (docs/http.md, `syncd pause`), and an index for the status page.
--
-- A pause is an operator's hold, kept apart from `enabled`, which the config owns (a
-- `syncd apply` never lifts or sets a pause).
--
-- A paused integration is not scheduled (the scheduler's query leaves it out), `syncd sync`
-- refuses it, and its queued jobs stay pending without being claimed: they run after the
-- resume. A job already running when the pause comes finishes.
ALTER TABLE integration_configs
    ADD COLUMN paused_at    timestamptz,
    ADD COLUMN paused_by    text,
    ADD COLUMN pause_reason text;

CREATE INDEX integration_configs_paused ON integration_configs (venue_id, provider)
    WHERE paused_at IS NOT NULL;

-- The claim (syncd_claim_jobs, migrations/0005) leaves out the candidates of every
-- integration this function names, and reads it again, in a fresh snapshot, just before its
-- UPDATE: so a paused integration is named here beside the running ones, and a pause
-- committed while a claim is choosing still keeps that claim from taking its jobs. Paused
-- integrations are few and found through the partial index above.
CREATE OR REPLACE FUNCTION syncd_running_integrations() RETURNS text[]
LANGUAGE sql STABLE AS $$
    SELECT coalesce(array_agg(k), '{}')
      FROM (SELECT syncd_integration_key(venue_id, provider) AS k
              FROM sync_queue WHERE status = 'processing'
            UNION ALL
            SELECT syncd_integration_key(venue_id, provider)
              FROM integration_configs WHERE paused_at IS NOT NULL) AS blocked
$$;

-- The status page (daemon/http/status.py) lists the latest syncs of every venue a platform
-- admin sees: newest first over all integrations, which the per-integration index cannot give
-- without reading every row.
CREATE INDEX sync_logs_started ON sync_logs (started_at DESC);
