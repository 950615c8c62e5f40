-- Inventory counts observed at a provider (daemon/inventory.py, docs/inventory.md).
--
-- One row per inventory link: the newest count of the provider that was settled, by the
-- provider's own clock. An observation no newer than it is stale (a delivery that arrived
-- late, a replay) and changes nothing; the row also keeps what the count implied: the
-- tickets sold at the provider's register since syncd first set the count, which the
-- platform then holds in its pos_sales table.
CREATE TABLE inventory_observations (
    venue_id    uuid        NOT NULL,
    provider    text        NOT NULL,
    local_id    text        NOT NULL,
    remote_id   text        NOT NULL,
    quantity    integer     NOT NULL,
    observed_at timestamptz NOT NULL,
    pos_total   integer     NOT NULL,
    settled_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (venue_id, provider, local_id)
);
