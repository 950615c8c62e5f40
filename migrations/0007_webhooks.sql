-- Webhook ingest: the raw delivery as received (signatures cover these exact bytes, and the
-- background processor parses them again) and its content type. Pending events are found by
-- the existing integration_webhooks_status index (status, received_at): no index is added,
-- so storing a delivery updates no more indexes than before.
ALTER TABLE integration_webhooks ADD COLUMN body bytea;
ALTER TABLE integration_webhooks ADD COLUMN content_type text;

-- Every statement that stores new events queues the processing job of each of their
-- providers in the same transaction: a pending event always has a job that will process it,
-- and storing a batch of deliveries is one statement, one round trip. The job is one per
-- provider (venue 00000000-0000-0000-0000-000000000000, entity_type 'webhooks', CRITICAL
-- lane); while one is pending, later ones coalesce into it (sync_queue_coalesce).
CREATE FUNCTION syncd_webhooks_enqueue() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO sync_queue (venue_id, provider, operation, entity_type, lane)
    SELECT DISTINCT '00000000-0000-0000-0000-000000000000'::uuid, n.provider, 'sync',
           'webhooks', 'CRITICAL'
      FROM new_events n
     ORDER BY n.provider
    ON CONFLICT DO NOTHING;
    RETURN NULL;
END
$$;
CREATE TRIGGER integration_webhooks_enqueue AFTER INSERT ON integration_webhooks
    REFERENCING NEW TABLE AS new_events
    FOR EACH STATEMENT EXECUTE FUNCTION syncd_webhooks_enqueue();
