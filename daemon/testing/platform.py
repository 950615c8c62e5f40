"""The ticketing platform's own tables, with realistic sample data, for tests, demo and bench.

syncd reads these tables and never alters them in production; this module exists so that
tests, ``syncd demo`` and ``bench/`` have a platform to read from. The schema is the one
``docs/platform-schema.md`` documents. Sample data is deterministic: the same arguments give
the same ids, names, prices and timestamps, so tests can name rows they expect.

Data is generated inside Postgres with ``generate_series`` so that 10,000 customers and
20,000 orders take well under a second to create.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

import asyncpg

__all__ = [
    "PLATFORM_SCHEMA",
    "SampleVenue",
    "change_rows",
    "create_platform_schema",
    "delete_rows",
    "seed_venue",
]

#: DDL of the platform tables syncd reads (see docs/platform-schema.md).
PLATFORM_SCHEMA = """
CREATE TABLE IF NOT EXISTS venues (
    id          uuid PRIMARY KEY,
    name        text        NOT NULL,
    venue_type  text,
    timezone    text        NOT NULL DEFAULT 'UTC',
    currency    char(3)     NOT NULL DEFAULT 'USD',
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS events (
    id           uuid PRIMARY KEY,
    venue_id     uuid        NOT NULL REFERENCES venues (id),
    name         text        NOT NULL,
    description  text,
    category     text,
    status       text        NOT NULL DEFAULT 'published',
    starts_at    timestamptz,
    ends_at      timestamptz,
    price_minor  bigint      NOT NULL CHECK (price_minor >= 0),
    currency     char(3)     NOT NULL,
    capacity     integer,
    url          text,
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now(),
    deleted_at   timestamptz
);
CREATE INDEX IF NOT EXISTS events_venue_updated ON events (venue_id, updated_at);
CREATE TABLE IF NOT EXISTS customers (
    id               uuid PRIMARY KEY,
    venue_id         uuid        NOT NULL REFERENCES venues (id),
    email            text,
    first_name       text,
    last_name        text,
    phone            text,
    marketing_opt_in boolean     NOT NULL DEFAULT false,
    tags             text[]      NOT NULL DEFAULT '{}',
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    deleted_at       timestamptz
);
CREATE INDEX IF NOT EXISTS customers_venue_updated ON customers (venue_id, updated_at);
CREATE TABLE IF NOT EXISTS orders (
    id            uuid PRIMARY KEY,
    venue_id      uuid        NOT NULL REFERENCES venues (id),
    customer_id   uuid        REFERENCES customers (id),
    event_id      uuid        NOT NULL REFERENCES events (id),
    status        text        NOT NULL DEFAULT 'paid',
    total_minor   bigint      NOT NULL CHECK (total_minor >= 0),
    fee_minor     bigint      NOT NULL DEFAULT 0 CHECK (fee_minor >= 0),
    currency      char(3)     NOT NULL,
    purchased_at  timestamptz NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    deleted_at    timestamptz
);
CREATE INDEX IF NOT EXISTS orders_venue_updated ON orders (venue_id, updated_at);
CREATE TABLE IF NOT EXISTS tickets (
    id           uuid PRIMARY KEY,
    order_id     uuid        NOT NULL REFERENCES orders (id),
    event_id     uuid        NOT NULL REFERENCES events (id),
    ticket_type  text        NOT NULL DEFAULT 'general',
    price_minor  bigint      NOT NULL CHECK (price_minor >= 0),
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS tickets_order ON tickets (order_id);
CREATE TABLE IF NOT EXISTS pos_sales (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    venue_id     uuid        NOT NULL REFERENCES venues (id),
    event_id     uuid        NOT NULL REFERENCES events (id),
    provider     text        NOT NULL,
    quantity     integer     NOT NULL,
    source_key   text        NOT NULL UNIQUE,
    observed_at  timestamptz,
    created_at   timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX IF NOT EXISTS pos_sales_event ON pos_sales (venue_id, event_id);
"""

# Rows are generated in SQL; ids are md5-derived so they are stable across runs.
_SEED_EVENTS = """
INSERT INTO events (id, venue_id, name, description, category, status, starts_at, ends_at,
                    price_minor, currency, capacity, url, created_at, updated_at)
SELECT md5($1::text || ':event:' || i)::uuid, $1::uuid,
       (ARRAY['Late Show', 'Open Mic', 'Headliner', 'Matinee', 'Jazz Night'])[1 + i % 5]
           || ' #' || i,
       'Event number ' || i || ' at the venue',
       (ARRAY['comedy', 'music', 'theatre', 'family'])[1 + i % 4],
       CASE WHEN i % 50 = 0 THEN 'draft' ELSE 'published' END,
       $2::timestamptz + make_interval(days => i % 365, hours => 19),
       $2::timestamptz + make_interval(days => i % 365, hours => 22),
       500 + (i * 37) % 9500, $3, 50 + i % 450,
       'https://tickets.example.com/e/' || i,
       $2::timestamptz, $2::timestamptz + make_interval(secs => i)
FROM generate_series(1, $4::int) AS i
"""
_SEED_CUSTOMERS = """
INSERT INTO customers (id, venue_id, email, first_name, last_name, phone, marketing_opt_in,
                       tags, created_at, updated_at)
SELECT md5($1::text || ':customer:' || i)::uuid, $1::uuid,
       'buyer' || i || '.' || substr(md5($1::text), 1, 6) || '@example.com',
       (ARRAY['Ada', 'Grace', 'Alan', 'Edsger', 'Barbara', 'Donald', 'Frances', 'John',
              'Margaret', 'Dennis', 'Ken', 'Radia', 'Tim', 'Sophie', 'Leslie', 'Niklaus',
              'Shafi', 'Robin', 'Judea', 'Whitfield'])[1 + i % 20],
       -- Full names are unique (providers such as QuickBooks require unique display names).
       (ARRAY['Lovelace', 'Hopper', 'Turing', 'Dijkstra', 'Liskov', 'Knuth', 'Allen',
              'McCarthy', 'Hamilton', 'Ritchie', 'Thompson', 'Perlman', 'Berners-Lee',
              'Wilson', 'Lamport', 'Wirth', 'Goldwasser', 'Milner', 'Pearl', 'Diffie',
              'Hellman', 'Rivest', 'Shamir', 'Adleman', 'Kay'])[1 + (i / 20) % 25]
           || CASE WHEN i > 500 THEN ' ' || to_char(i / 500, 'FMRN') ELSE '' END,
       '+1555' || lpad((i % 10000000)::text, 7, '0'),
       i % 3 = 0,
       CASE WHEN i % 10 = 0 THEN ARRAY['vip'] ELSE ARRAY[]::text[] END,
       $2::timestamptz, $2::timestamptz + make_interval(secs => i)
FROM generate_series(1, $3::int) AS i
"""
_SEED_ORDERS = """
INSERT INTO orders (id, venue_id, customer_id, event_id, status, total_minor, fee_minor,
                    currency, purchased_at, created_at, updated_at)
SELECT md5($1::text || ':order:' || i)::uuid, $1::uuid,
       md5($1::text || ':customer:' || (1 + i % $4::int))::uuid,
       md5($1::text || ':event:' || (1 + i % $5::int))::uuid,
       CASE WHEN i % 40 = 0 THEN 'refunded' ELSE 'paid' END,
       (1 + i % 3) * (500 + ((1 + i % $5::int) * 37) % 9500),
       (1 + i % 3) * 150, $3,
       $2::timestamptz + make_interval(mins => i),
       $2::timestamptz, $2::timestamptz + make_interval(secs => i)
FROM generate_series(1, $6::int) AS i
"""
_SEED_TICKETS = """
INSERT INTO tickets (id, order_id, event_id, ticket_type, price_minor, created_at, updated_at)
SELECT md5(o.id::text || ':ticket:' || n)::uuid, o.id, o.event_id,
       CASE WHEN n = 1 THEN 'general' ELSE 'guest' END,
       o.total_minor / (o.total_minor / GREATEST(e.price_minor, 1)),
       o.created_at, o.updated_at
FROM orders o JOIN events e ON e.id = o.event_id,
     generate_series(1, (o.total_minor / GREATEST(e.price_minor, 1))::int) AS n
WHERE o.venue_id = $1::uuid
"""

_TABLES = {"product": "events", "customer": "customers", "transaction": "orders"}


@dataclass(frozen=True, slots=True)
class SampleVenue:
    """What :func:`seed_venue` created."""

    venue_id: uuid.UUID
    name: str
    events: int
    customers: int
    orders: int


async def create_platform_schema(conn: asyncpg.Connection) -> None:
    """Create the platform tables (if missing) in the connection's current schema."""
    await conn.execute(PLATFORM_SCHEMA)


async def seed_venue(
    conn: asyncpg.Connection,
    *,
    venue_id: uuid.UUID | None = None,
    name: str = "The Laugh Factory",
    venue_type: str | None = "comedy_club",
    currency: str = "USD",
    events: int = 20,
    customers: int = 50,
    orders: int = 100,
    base_time: datetime | None = None,
) -> SampleVenue:
    """One venue with ``events`` events, ``customers`` customers and ``orders`` orders.

    Each order holds one to three tickets of its event; ``base_time`` (default 2026-01-01
    UTC) anchors every timestamp so that later changes are always newer.
    """
    if events < 1 and orders > 0:
        raise ValueError("orders need at least one event")
    if customers < 1 and orders > 0:
        raise ValueError("orders need at least one customer")
    vid = venue_id or uuid.uuid5(uuid.NAMESPACE_URL, f"syncd-sample-venue:{name}")
    base = base_time or datetime(2026, 1, 1, tzinfo=UTC)
    async with conn.transaction():
        await conn.execute(
            "INSERT INTO venues (id, name, venue_type, currency, created_at, updated_at) "
            "VALUES ($1, $2, $3, $4, $5, $5)",
            vid, name, venue_type, currency, base,
        )
        if events:
            await conn.execute(_SEED_EVENTS, str(vid), base, currency, events)
        if customers:
            await conn.execute(_SEED_CUSTOMERS, str(vid), base, customers)
        if orders:
            await conn.execute(_SEED_ORDERS, str(vid), base, currency, customers, events, orders)
            await conn.execute(_SEED_TICKETS, str(vid))
    return SampleVenue(vid, name, events, customers, orders)


async def change_rows(
    conn: asyncpg.Connection, venue_id: uuid.UUID, entity: str, count: int
) -> list[str]:
    """Change ``count`` rows of an entity (a visible field and ``updated_at``); their ids."""
    table = _TABLES[entity]
    column = {"events": "name", "customers": "last_name", "orders": "status"}[table]
    value = {"events": "name || ' (moved)'", "customers": "last_name || '-Smith'",
             "orders": "CASE WHEN status = 'paid' THEN 'refunded' ELSE 'paid' END"}[table]
    rows = await conn.fetch(
        f"UPDATE {table} SET {column} = {value}, updated_at = now() "
        f"WHERE id IN (SELECT id FROM {table} WHERE venue_id = $1 AND deleted_at IS NULL "
        f"ORDER BY id LIMIT $2) RETURNING id::text",
        venue_id, count,
    )
    return [r[0] for r in rows]


async def delete_rows(
    conn: asyncpg.Connection, venue_id: uuid.UUID, entity: str, count: int, *, hard: bool = False
) -> list[str]:
    """Soft-delete (``deleted_at``) or hard-delete ``count`` rows of an entity; their ids."""
    table = _TABLES[entity]
    pick = (f"SELECT id FROM {table} WHERE venue_id = $1 AND deleted_at IS NULL "
            f"ORDER BY id DESC LIMIT $2")
    if not hard:
        rows = await conn.fetch(
            f"UPDATE {table} SET deleted_at = now(), updated_at = now() "
            f"WHERE id IN ({pick}) RETURNING id::text", venue_id, count)
        return [r[0] for r in rows]
    async with conn.transaction():
        ids = [r[0] for r in await conn.fetch(pick, venue_id, count)]
        if table == "orders":
            await conn.execute("DELETE FROM tickets WHERE order_id = ANY($1)", ids)
        elif table == "events":
            await conn.execute("DELETE FROM tickets WHERE event_id = ANY($1)", ids)
            await conn.execute("DELETE FROM orders WHERE event_id = ANY($1)", ids)
        elif table == "customers":
            await conn.execute("UPDATE orders SET customer_id = NULL WHERE customer_id = ANY($1)",
                               ids)
        await conn.execute(f"DELETE FROM {table} WHERE id = ANY($1)", ids)
    return [str(i) for i in ids]
