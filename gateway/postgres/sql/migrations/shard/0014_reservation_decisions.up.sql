-- The one decision on each reservation of the place-order saga, kept in the order's shard:
-- 'created' is written by the transaction that creates the order, 'abandoned' by whoever gives
-- up on it (the sweeper when the reservation expired, the writer when creating certainly
-- failed) before the catalog releases its units. The primary key lets only the first win: an
-- order is never created once its units were released, and units are never released once the
-- order exists.

CREATE TABLE reservation_decisions (
    order_id   uuid PRIMARY KEY,
    decision   text NOT NULL,
    decided_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT reservation_decisions_decision CHECK (decision IN ('created', 'abandoned'))
);

-- Orders created before this table existed were created by their saga.
INSERT INTO reservation_decisions (order_id, decision, decided_at)
SELECT id, 'created', created_at FROM orders;
