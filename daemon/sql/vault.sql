-- The token vault: sealed tokens, API keys and OAuth states; rotation and key status.

-- name: integration_refs
SELECT credentials, environment, status FROM integration_configs
WHERE venue_id = $1::uuid AND provider = $2

-- name: token_row
SELECT encrypted_access_token, encrypted_refresh_token, encryption_key_version, scopes,
       token_type, account_id, account, expires_at, refresh_token_expires_at
FROM oauth_tokens WHERE venue_id = $1::uuid AND provider = $2

-- name: token_row_for_update
SELECT encrypted_access_token, encrypted_refresh_token, encryption_key_version, scopes,
       token_type, account_id, account, expires_at, refresh_token_expires_at
FROM oauth_tokens WHERE venue_id = $1::uuid AND provider = $2
FOR UPDATE

-- name: save_token
INSERT INTO oauth_tokens (venue_id, provider, encrypted_access_token, encrypted_refresh_token,
                          encryption_key_version, scopes, token_type, account_id, account,
                          expires_at, refresh_token_expires_at, created_by)
VALUES ($1::uuid, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
ON CONFLICT (venue_id, provider) DO UPDATE SET
    encrypted_access_token = EXCLUDED.encrypted_access_token,
    encrypted_refresh_token = EXCLUDED.encrypted_refresh_token,
    encryption_key_version = EXCLUDED.encryption_key_version,
    scopes = EXCLUDED.scopes, token_type = EXCLUDED.token_type,
    account_id = EXCLUDED.account_id, account = EXCLUDED.account,
    expires_at = EXCLUDED.expires_at,
    refresh_token_expires_at = EXCLUDED.refresh_token_expires_at,
    created_by = EXCLUDED.created_by, refresh_count = 0, refresh_failed_count = 0,
    created_at = now(), updated_at = now()

-- name: save_refreshed_token
UPDATE oauth_tokens SET
    encrypted_access_token = $3, encrypted_refresh_token = $4, encryption_key_version = $5,
    scopes = COALESCE($6, scopes), expires_at = $7,
    refresh_token_expires_at = COALESCE($8, refresh_token_expires_at),
    refresh_count = refresh_count + 1, last_refreshed_at = now(), refresh_failed_count = 0,
    updated_at = now()
WHERE venue_id = $1::uuid AND provider = $2

-- name: token_refresh_failed
UPDATE oauth_tokens SET refresh_failed_count = refresh_failed_count + 1, updated_at = now()
WHERE venue_id = $1::uuid AND provider = $2

-- name: delete_tokens
DELETE FROM oauth_tokens WHERE venue_id = $1::uuid AND provider = $2

-- name: api_key_row
SELECT key_name, environment, encrypted_api_key, encryption_key_version, is_valid,
       validation_error
FROM venue_api_keys
WHERE venue_id = $1::uuid AND provider = $2 AND environment = $3 AND key_name = $4

-- name: save_api_key
INSERT INTO venue_api_keys (venue_id, provider, key_name, encrypted_api_key,
                            encryption_key_version, environment, is_valid,
                            last_validated_at, validation_error)
VALUES ($1::uuid, $2, $4, $5, $6, $3, true, now(), NULL)
ON CONFLICT (venue_id, provider, environment, key_name) DO UPDATE SET
    encrypted_api_key = EXCLUDED.encrypted_api_key, encrypted_api_secret = NULL,
    encryption_key_version = EXCLUDED.encryption_key_version, is_valid = true,
    last_validated_at = now(), validation_error = NULL, updated_at = now()

-- name: api_key_validated
UPDATE venue_api_keys SET is_valid = $5, validation_error = $6, last_validated_at = now(),
    updated_at = now()
WHERE venue_id = $1::uuid AND provider = $2 AND environment = $3 AND key_name = $4

-- name: delete_api_keys
DELETE FROM venue_api_keys WHERE venue_id = $1::uuid AND provider = $2

-- name: mark_connected
UPDATE integration_configs SET
    status = 'connected', connected_at = now(), disconnected_at = NULL, last_error = NULL,
    health_status = CASE WHEN health_status = 'unhealthy' THEN 'unknown' ELSE health_status END,
    failure_count = 0, updated_at = now()
WHERE venue_id = $1::uuid AND provider = $2

-- name: mark_failed
UPDATE integration_configs SET
    status = 'error', last_error = $3, last_error_at = now(), health_status = 'unhealthy',
    health_checked_at = now(), failure_count = failure_count + 1, updated_at = now()
WHERE venue_id = $1::uuid AND provider = $2

-- name: mark_disconnected
UPDATE integration_configs SET
    status = 'disconnected', disconnected_at = now(), health_status = 'unknown',
    updated_at = now()
WHERE venue_id = $1::uuid AND provider = $2

-- name: integration_for_venue
SELECT venue_id::text AS venue_id, venue_name, provider, environment, credentials, options,
       status
FROM integration_configs
WHERE (venue_id::text = $1 OR venue_name = $1) AND provider = $2

-- name: insert_state
INSERT INTO oauth_states (state, venue_id, provider, redirect_uri, encrypted_code_verifier,
                          encryption_key_version, created_by, expires_at)
VALUES ($1, $2::uuid, $3, $4, $5, $6, $7, now() + make_interval(secs => $8))

-- name: take_state
SELECT state, venue_id::text AS venue_id, provider, redirect_uri, encrypted_code_verifier,
       encryption_key_version, created_by, expires_at, consumed_at, now() AS now
FROM oauth_states WHERE state = $1
FOR UPDATE

-- name: consume_state
UPDATE oauth_states SET consumed_at = now() WHERE state = $1

-- name: prune_states
DELETE FROM oauth_states WHERE expires_at < now() - interval '1 day'

-- name: oauth_completed_log
INSERT INTO sync_logs (venue_id, provider, operation, status, details, started_at,
                       completed_at)
VALUES ($1::uuid, $2, 'oauth_completed', 'completed', $3, now(), now())

-- name: key_status
SELECT 'oauth_tokens' AS "table", encryption_key_version AS version,
       count(*)::int * 2 - count(*) FILTER (WHERE encrypted_refresh_token IS NULL)::int
           AS "values"
FROM oauth_tokens GROUP BY encryption_key_version
UNION ALL
SELECT 'venue_api_keys', encryption_key_version,
       count(*)::int + count(*) FILTER (WHERE encrypted_api_secret IS NOT NULL)::int
FROM venue_api_keys GROUP BY encryption_key_version
UNION ALL
SELECT 'oauth_states', encryption_key_version, count(*)::int
FROM oauth_states WHERE encrypted_code_verifier IS NOT NULL GROUP BY encryption_key_version
ORDER BY 1, 2

-- name: stale_tokens
SELECT id, venue_id::text AS venue_id, provider, encrypted_access_token,
       encrypted_refresh_token, encryption_key_version
FROM oauth_tokens WHERE encryption_key_version <> $1
ORDER BY id LIMIT $2
FOR UPDATE

-- name: reseal_token
UPDATE oauth_tokens SET encrypted_access_token = $2, encrypted_refresh_token = $3,
    encryption_key_version = $4
WHERE id = $1 AND encryption_key_version = $5

-- name: stale_api_keys
SELECT id, venue_id::text AS venue_id, provider, key_name, environment, encrypted_api_key,
       encrypted_api_secret, encryption_key_version
FROM venue_api_keys WHERE encryption_key_version <> $1
ORDER BY id LIMIT $2
FOR UPDATE

-- name: reseal_api_key
UPDATE venue_api_keys SET encrypted_api_key = $2, encrypted_api_secret = $3,
    encryption_key_version = $4
WHERE id = $1 AND encryption_key_version = $5

-- name: stale_states
SELECT state, venue_id::text AS venue_id, provider, encrypted_code_verifier,
       encryption_key_version
FROM oauth_states
WHERE encrypted_code_verifier IS NOT NULL AND encryption_key_version <> $1
ORDER BY state LIMIT $2
FOR UPDATE

-- name: reseal_state
UPDATE oauth_states SET encrypted_code_verifier = $2, encryption_key_version = $3
WHERE state = $1 AND encryption_key_version = $4

-- name: credential_sources
SELECT c.venue_id::text AS venue_id, c.provider,
       t.expires_at AS token_expires_at, t.refresh_failed_count,
       k.is_valid AS key_valid, k.validation_error,
       (t.venue_id IS NOT NULL) AS has_token, (k.venue_id IS NOT NULL) AS has_key,
       c.credentials
FROM integration_configs c
LEFT JOIN oauth_tokens t ON t.venue_id = c.venue_id AND t.provider = c.provider
LEFT JOIN venue_api_keys k ON k.venue_id = c.venue_id AND k.provider = c.provider
     AND k.environment = c.environment AND k.key_name = 'api_key'
WHERE $1::uuid IS NULL OR c.venue_id = $1::uuid
