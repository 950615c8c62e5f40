-- Webhook ingest (daemon/http/store.py) and background processing (daemon/http/processing.py).

-- name: store_deliveries
-- One group commit: every delivery of the batch in one statement. A repeated (provider,
-- external_id), earlier or within the batch, stores nothing; the rows returned are the new ones.
-- Rows go in key order, so concurrent batches (replicas) lock shared keys in one order: the
-- later waits for the earlier and finds duplicates, never a deadlock.
INSERT INTO integration_webhooks (venue_id, provider, event_type, external_id, headers, payload,
                                  body, content_type, received_at)
SELECT d.venue_id, d.provider, '', d.external_id, d.headers::jsonb, d.payload::jsonb, d.body,
       d.content_type, d.received_at
  FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[], $6::bytea[],
              $7::text[], $8::timestamptz[])
       WITH ORDINALITY AS d(venue_id, provider, external_id, headers, payload, body,
                            content_type, received_at, n)
 ORDER BY d.provider, d.external_id, d.n
ON CONFLICT (provider, external_id) DO NOTHING
RETURNING provider, external_id

-- name: pending_events
-- The next pending events of one provider, oldest first, locked for this processor.
SELECT id, venue_id, provider, external_id, headers, body, content_type, received_at,
       retry_count
  FROM integration_webhooks
 WHERE provider = $1 AND status = 'pending' AND NOT (id = ANY ($3::uuid[]))
 ORDER BY received_at, id
 LIMIT $2
   FOR UPDATE SKIP LOCKED

-- name: settle_event
UPDATE integration_webhooks
   SET status = $2, event_type = $3, venue_id = coalesce(venue_id, $4::uuid), error = $5,
       processed_at = now()
 WHERE id = $1

-- name: event_failed
-- A processing failure: retried by a later run until max attempts ($3), then failed.
UPDATE integration_webhooks
   SET retry_count = retry_count + 1,
       error = $2,
       status = CASE WHEN retry_count + 1 >= $3 THEN 'failed' ELSE 'pending' END,
       processed_at = CASE WHEN retry_count + 1 >= $3 THEN now() END
 WHERE id = $1
RETURNING status

-- name: integration_of_venue
SELECT venue_id, enabled, schedules FROM integration_configs
 WHERE venue_id = $1::uuid AND provider = $2

-- name: integrations_of_account
-- Integrations of a provider connected to one provider account: the account id the OAuth
-- flow recorded, an account fact among the credentials, or an account option.
SELECT c.venue_id, c.enabled, c.schedules
  FROM integration_configs c
  LEFT JOIN oauth_tokens t ON t.venue_id = c.venue_id AND t.provider = c.provider
 WHERE c.provider = $1
   AND (t.account_id = $2
        OR $2 IN (c.options ->> 'account', c.options ->> 'account_id', c.options ->> 'list_id',
                  c.options ->> 'realm_id', c.options ->> 'merchant_id')
        OR (jsonb_typeof(c.credentials -> 'account') = 'object'
            AND EXISTS (SELECT 1 FROM jsonb_each_text(c.credentials -> 'account') a
                         WHERE a.value = $2)))
 ORDER BY c.venue_id

-- name: record_inbound_change
-- The local record a remote id is linked to, when there is one, travels with the change.
-- $10: the record's values in the plugin's inbound field catalogue (NULL: none carried).
INSERT INTO inbound_changes (venue_id, provider, entity_type, remote_id, local_id, change,
                             payload, source, dedupe_key, occurred_at, received_at, fields)
SELECT $1::uuid, $2, $3, $4,
       (SELECT l.local_id FROM entity_links l
         WHERE l.venue_id = $1::uuid AND l.provider = $2 AND l.entity_type = $3
           AND l.remote_id = $4),
       $5, $6, 'webhook', $7, $8, $9, $10::jsonb
ON CONFLICT (provider, dedupe_key) DO NOTHING
RETURNING id

-- name: webhook_counts
SELECT provider, status, count(*) AS events FROM integration_webhooks GROUP BY provider, status

-- name: venue_credentials
SELECT credentials FROM integration_configs WHERE venue_id = $1::uuid AND provider = $2
