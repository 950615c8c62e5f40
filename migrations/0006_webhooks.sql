-- Webhook ingest: the raw delivery as received (signatures cover these exact bytes, and the
-- background processor parses them again) and its content type. Pending events are found by
-- the existing integration_webhooks_status index (status, received_at): no index is added,
-- so storing a delivery updates no more indexes than before.
ALTER TABLE integration_webhooks ADD COLUMN body bytea;
ALTER TABLE integration_webhooks ADD COLUMN content_type text;
