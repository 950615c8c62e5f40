-- Health checks of the HTTP server (daemon/http/health.py).

-- name: ping
SELECT 1

-- name: latest_revision
SELECT id, content_hash FROM config_revisions ORDER BY id DESC LIMIT 1
