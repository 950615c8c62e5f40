-- Provider limits shared by every replica (daemon/ratelimit_shared.py). The functions are
-- defined by migrations/0007_rate_limits.sql.

-- name: grant
SELECT granted, wait_seconds FROM syncd_rate_grant($1, $2, $3, $4, $5, $6)

-- name: take_slot
SELECT syncd_rate_take_slot($1, $2, $3, $4, $5)

-- name: release_slot
UPDATE rate_limit_slots SET slots = greatest(0, slots - 1)
 WHERE account = $1 AND holder = $2

-- name: renew_slots
UPDATE rate_limit_slots
   SET expires_at = clock_timestamp() + make_interval(secs => $2)
 WHERE holder = $1 AND slots > 0

-- name: drop_holder
DELETE FROM rate_limit_slots WHERE holder = $1

-- name: pause
-- Hold every replica's requests of the account for $3 seconds (a 429's Retry-After); a
-- later pause never shortens an earlier one.
INSERT INTO rate_limit_accounts AS a (account, provider, paused_until)
VALUES ($1, $2, clock_timestamp() + make_interval(secs => $3))
ON CONFLICT (account) DO UPDATE
   SET paused_until = greatest(a.paused_until, excluded.paused_until)
RETURNING extract(epoch FROM a.paused_until - clock_timestamp())::double precision

-- name: paused_for
SELECT greatest(0, extract(epoch FROM paused_until - clock_timestamp()))::double precision
  FROM rate_limit_accounts WHERE account = $1

-- name: acquire
SELECT granted, wait_seconds, slotted FROM syncd_rate_acquire($1, $2, $3, $4, $5, $6, $7, $8, $9)
