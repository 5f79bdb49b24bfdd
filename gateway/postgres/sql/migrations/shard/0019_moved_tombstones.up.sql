-- What a shard keeps of a customer moved away (fanout shards move): where it and each of its
-- orders went, written in the transaction that deletes them here (the move's commit point).
-- An order id names the shard that minted it, so a request for a moved order lands here first
-- and follows the tombstone.

-- A customer's tombstone keeps the rows it moved (move_read_customer's document) until the
-- target holds them: the target's copy commits after this shard's deletion, and a move cut off
-- between the two writes them there from here.
CREATE TABLE moved_customers (
    customer_id uuid PRIMARY KEY,
    to_shard    text NOT NULL,
    move_id     uuid NOT NULL,
    moved_at    timestamptz NOT NULL DEFAULT now(),
    document    jsonb
);

CREATE TABLE moved_orders (
    order_id uuid PRIMARY KEY,
    to_shard text NOT NULL,
    move_id  uuid NOT NULL,
    moved_at timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX moved_orders_move_id ON moved_orders (move_id);

-- Order numbers come from each shard's own sequence, so two shards mint the same numbers; a
-- moved order keeps its number, which the target may have minted too. Kept indexed for lookups.
ALTER TABLE orders DROP CONSTRAINT orders_order_number_key;
CREATE INDEX orders_order_number ON orders (order_number);
