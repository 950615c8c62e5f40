-- Inventory observations (daemon/inventory.py). $1 venue id, $2 provider, $3 local id
-- (inventory_link: the remote id).

-- name: lock_observation
-- One settlement of an event's count at a time: held to the end of the transaction.
SELECT pg_advisory_xact_lock(hashtextextended($1, 0))

-- name: inventory_link
SELECT local_id, remote_version
FROM entity_links
WHERE venue_id = $1::uuid AND provider = $2 AND entity_type = 'inventory' AND remote_id = $3

-- name: last_observation
SELECT quantity, observed_at, pos_total
FROM inventory_observations
WHERE venue_id = $1::uuid AND provider = $2 AND local_id = $3

-- name: save_observation
INSERT INTO inventory_observations (venue_id, provider, local_id, remote_id, quantity,
                                    observed_at, pos_total)
VALUES ($1::uuid, $2, $3, $4, $5, $6, $7)
ON CONFLICT (venue_id, provider, local_id) DO UPDATE SET
    remote_id = EXCLUDED.remote_id, quantity = EXCLUDED.quantity,
    observed_at = EXCLUDED.observed_at, pos_total = EXCLUDED.pos_total, settled_at = now()
