-- Where each (venue, provider, entity) sync stands: the source change-timestamp watermark
-- that lets an incremental run skip untouched rows, when the last full check ran, and how
-- far pulls from the provider have got.
CREATE TABLE sync_state (
    venue_id       uuid        NOT NULL,
    provider       text        NOT NULL,
    entity_type    text        NOT NULL,
    -- Highest source change timestamp fully processed; NULL means "never synced".
    watermark_at   timestamptz,
    last_full_at   timestamptz,
    last_pull_at   timestamptz,
    last_run_at    timestamptz,
    updated_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (venue_id, provider, entity_type)
);

-- Failed links are retried on every run, whatever the watermark says.
CREATE INDEX entity_links_unsettled
    ON entity_links (venue_id, provider, entity_type) WHERE state IN ('pending', 'failed');
