-- Sharded mode's shards: products live in the catalog, so order items cannot reference them
-- here; and an order's cancellation queues the return of its units to the catalog in the same
-- transaction, whichever code path cancels it (a caller, a failed payment, the payment
-- timeout), for the saga's sweeper to hand back.

ALTER TABLE order_items DROP CONSTRAINT order_items_product_id_fkey;

CREATE TABLE inventory_returns (
    order_id  uuid PRIMARY KEY,
    queued_at timestamptz NOT NULL DEFAULT now()
);

CREATE FUNCTION queue_inventory_return() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO inventory_returns (order_id) VALUES (NEW.id) ON CONFLICT DO NOTHING;
    RETURN NULL;
END $$;

-- 'cancelled' is the one status that returns an order's units (RESTOCKING_STATUSES).
CREATE TRIGGER orders_cancelled_return_units
    AFTER UPDATE OF status ON orders
    FOR EACH ROW
    WHEN (NEW.status = 'cancelled' AND OLD.status IS DISTINCT FROM 'cancelled')
    EXECUTE FUNCTION queue_inventory_return();
