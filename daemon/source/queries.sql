-- Queries on the ticketing platform's tables (daemon/source/reader.py). Written against the default
-- platform schema (docs/platform-schema.md); {table} and {table.column} placeholders are
-- replaced by quoted identifiers from the source settings, never by values.
-- Every query takes: $1 venue id, $2 changed-since (NULL: every row), $3 extra local ids
-- to include whatever their timestamp (records whose last push failed). Each returns its
-- row's id in its own type as "key", the key the reader pages on (keyset pagination).

-- name: venue
SELECT v.{venues.id}::text AS id, v.{venues.name} AS name, v.{venues.venue_type} AS venue_type,
       v.{venues.timezone} AS timezone, v.{venues.currency} AS currency,
       v.{venues.updated_at} AS updated_at
FROM {venues} v
WHERE v.{venues.id} = $1

-- name: now
SELECT now()

-- name: products
SELECT e.{events.id} AS key, e.{events.id}::text AS id, e.{events.name} AS name,
       e.{events.description} AS description, e.{events.category} AS category,
       e.{events.status} AS status, e.{events.starts_at} AS starts_at,
       e.{events.ends_at} AS ends_at, e.{events.price_minor} AS price_minor,
       e.{events.currency} AS currency, e.{events.capacity} AS capacity,
       e.{events.url} AS url, e.{events.updated_at} AS updated_at,
       e.{events.deleted_at} AS deleted_at,
       GREATEST(e.{events.updated_at}, v.{venues.updated_at}) AS changed_at
FROM {events} e
JOIN {venues} v ON v.{venues.id} = e.{events.venue_id}
WHERE e.{events.venue_id} = $1
  AND ($2::timestamptz IS NULL
       OR e.{events.updated_at} > $2 OR v.{venues.updated_at} > $2
       OR e.{events.id}::text = ANY($3::text[]))

-- name: customers
SELECT c.{customers.id} AS key, c.{customers.id}::text AS id, c.{customers.email} AS email,
       c.{customers.first_name} AS first_name, c.{customers.last_name} AS last_name,
       c.{customers.phone} AS phone, c.{customers.marketing_opt_in} AS marketing_opt_in,
       c.{customers.tags} AS tags, c.{customers.created_at} AS created_at,
       c.{customers.updated_at} AS updated_at, c.{customers.deleted_at} AS deleted_at,
       GREATEST(c.{customers.updated_at}, v.{venues.updated_at}) AS changed_at
FROM {customers} c
JOIN {venues} v ON v.{venues.id} = c.{customers.venue_id}
WHERE c.{customers.venue_id} = $1
  AND ($2::timestamptz IS NULL
       OR c.{customers.updated_at} > $2 OR v.{venues.updated_at} > $2
       OR c.{customers.id}::text = ANY($3::text[]))

-- name: transactions
SELECT o.{orders.id} AS key, o.{orders.id}::text AS id, o.{orders.status} AS status,
       o.{orders.total_minor} AS total_minor, o.{orders.fee_minor} AS fee_minor,
       o.{orders.currency} AS currency, o.{orders.purchased_at} AS purchased_at,
       o.{orders.updated_at} AS updated_at, o.{orders.deleted_at} AS deleted_at,
       t.quantity, t.ticket_type,
       c.{customers.id}::text AS customer_id, c.{customers.email} AS customer_email,
       c.{customers.first_name} AS customer_first_name,
       c.{customers.last_name} AS customer_last_name, c.{customers.phone} AS customer_phone,
       c.{customers.marketing_opt_in} AS customer_marketing_opt_in,
       c.{customers.created_at} AS customer_created_at,
       c.{customers.updated_at} AS customer_updated_at,
       e.{events.id}::text AS event_id, e.{events.name} AS event_name,
       e.{events.starts_at} AS event_starts_at,
       GREATEST(o.{orders.updated_at}, t.updated_at, c.{customers.updated_at},
                e.{events.updated_at}, v.{venues.updated_at}) AS changed_at
FROM {orders} o
JOIN {venues} v ON v.{venues.id} = o.{orders.venue_id}
JOIN {events} e ON e.{events.id} = o.{orders.event_id}
LEFT JOIN {customers} c ON c.{customers.id} = o.{orders.customer_id}
LEFT JOIN LATERAL (
    SELECT count(*)::int AS quantity, min(k.{tickets.ticket_type}) AS ticket_type,
           max(k.{tickets.updated_at}) AS updated_at
    FROM {tickets} k WHERE k.{tickets.order_id} = o.{orders.id}
) t ON true
WHERE o.{orders.venue_id} = $1
  AND ($2::timestamptz IS NULL
       OR GREATEST(o.{orders.updated_at}, t.updated_at, c.{customers.updated_at},
                   e.{events.updated_at}, v.{venues.updated_at}) > $2
       OR o.{orders.id}::text = ANY($3::text[]))

-- name: inventory
-- Each event with a capacity and what is left of it: tickets of its live orders (orders not
-- deleted, whose status is not one that gave the seats back) and tickets sold at a provider's
-- register (pos_sales, written by syncd). An event changes when it, its venue, any of its
-- orders or tickets (a refund included) or its register sales change.
SELECT e.{events.id} AS key, e.{events.id}::text AS id, e.{events.name} AS name,
       e.{events.status} AS status, e.{events.starts_at} AS starts_at,
       e.{events.capacity} AS capacity, e.{events.deleted_at} AS deleted_at,
       COALESCE(s.sold, 0)::int AS sold, COALESCE(p.pos_sold, 0)::int AS pos_sold,
       GREATEST(e.{events.updated_at}, v.{venues.updated_at}, s.changed_at,
                p.changed_at) AS changed_at
FROM {events} e
JOIN {venues} v ON v.{venues.id} = e.{events.venue_id}
LEFT JOIN (
    SELECT o.{orders.event_id} AS event_id,
           count(k.{tickets.id}) FILTER (
               WHERE o.{orders.deleted_at} IS NULL
                 AND lower(o.{orders.status}) NOT IN
                     ('refunded', 'cancelled', 'canceled', 'voided', 'failed', 'expired')
           ) AS sold,
           max(GREATEST(o.{orders.updated_at}, k.{tickets.updated_at})) AS changed_at
    FROM {orders} o
    LEFT JOIN {tickets} k ON k.{tickets.order_id} = o.{orders.id}
    WHERE o.{orders.venue_id} = $1
    GROUP BY o.{orders.event_id}
) s ON s.event_id = e.{events.id}
LEFT JOIN (
    SELECT r.{pos_sales.event_id} AS event_id, sum(r.{pos_sales.quantity}) AS pos_sold,
           max(r.{pos_sales.created_at}) AS changed_at
    FROM {pos_sales} r
    WHERE r.{pos_sales.venue_id} = $1
    GROUP BY r.{pos_sales.event_id}
) p ON p.event_id = e.{events.id}
WHERE e.{events.venue_id} = $1
  AND e.{events.capacity} IS NOT NULL
  AND ($2::timestamptz IS NULL
       OR GREATEST(e.{events.updated_at}, v.{venues.updated_at}, s.changed_at,
                   p.changed_at) > $2
       OR e.{events.id}::text = ANY($3::text[]))

-- name: pos_sold
-- Tickets of one event sold at providers' registers, as recorded on the platform.
SELECT COALESCE(sum(r.{pos_sales.quantity}), 0)::int
FROM {pos_sales} r
WHERE r.{pos_sales.venue_id} = $1 AND r.{pos_sales.event_id}::text = $2

-- name: lock_event
-- The event (of this venue) whose register sales are written, locked until the write commits.
SELECT e.{events.id} AS id
FROM {events} e
WHERE e.{events.venue_id} = $1 AND e.{events.id}::text = $2
FOR UPDATE

-- name: insert_pos_sale
-- One register sale (or return, with a negative quantity) of an event; a key seen before is
-- not counted again.
INSERT INTO {pos_sales} ({pos_sales.venue_id}, {pos_sales.event_id}, {pos_sales.provider},
                         {pos_sales.quantity}, {pos_sales.source_key},
                         {pos_sales.observed_at})
VALUES ($1, $2, $3, $4, $5, $6)
ON CONFLICT ({pos_sales.source_key}) DO NOTHING
RETURNING {pos_sales.id}
