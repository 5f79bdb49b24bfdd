-- Sharded mode's catalog: which shard each customer lives on, and the inventory reservations
-- of the place-order saga (units taken here before the order is created in its shard).

CREATE TABLE customer_directory (
    customer_id uuid PRIMARY KEY,
    shard       text NOT NULL,
    -- Customers' emails are unique across shards, as they are in one database.
    email       varchar(255) NOT NULL UNIQUE,
    placed_at   timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX customer_directory_shard ON customer_directory (shard);

-- held: units taken, the order not yet known to exist; committed: the order exists;
-- released: the order was never created, units given back; returned: the order was cancelled,
-- units given back.
CREATE TABLE inventory_reservations (
    order_id        uuid PRIMARY KEY,
    shard           text NOT NULL,
    customer_id     uuid NOT NULL,
    product_ids     uuid[] NOT NULL,
    quantities      integer[] NOT NULL,
    status          text NOT NULL DEFAULT 'held',
    -- Its events' version: reserved is 1, each settlement one more.
    version         integer NOT NULL DEFAULT 1,
    idempotency_key text,
    request_hash    text,
    expires_at      timestamptz NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    settled_at      timestamptz,
    CONSTRAINT inventory_reservations_status
        CHECK (status IN ('held', 'committed', 'released', 'returned')),
    CONSTRAINT inventory_reservations_lines
        CHECK (cardinality(product_ids) = cardinality(quantities) AND cardinality(quantities) > 0)
);

-- The sweeper's work: open reservations by expiry.
CREATE INDEX inventory_reservations_held_expiry
    ON inventory_reservations (expires_at) WHERE status = 'held';
-- A retried request with the same idempotency key finds the reservation its first attempt
-- left open instead of taking the units again.
CREATE UNIQUE INDEX inventory_reservations_held_key
    ON inventory_reservations (idempotency_key)
    WHERE status = 'held' AND idempotency_key IS NOT NULL;
