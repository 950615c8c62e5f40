-- Webhook ingest: the raw delivery as received (signatures cover these exact bytes, and the
-- background processor parses them again), and the processor's scan of pending events.
ALTER TABLE integration_webhooks ADD COLUMN body bytea;
ALTER TABLE integration_webhooks ADD COLUMN content_type text;
CREATE INDEX integration_webhooks_pending
    ON integration_webhooks (provider, received_at, id) WHERE status = 'pending';
