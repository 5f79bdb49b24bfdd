-- Order history (gateway/history/): each order's event stream, read and pruned (store.py),
-- and checked against the orders (check.py).
-- Each query starts with a "-- name:" line and runs to the next one. gateway/postgres/queries.py
-- loads every .sql file of this folder; a name is defined in one file only.

-- name: order_stream
SELECT stream_id, version, event_id, event_type, payload, headers, occurred_at
FROM order_events
WHERE stream_id = $1
ORDER BY version;

-- name: order_exists
SELECT EXISTS (SELECT 1 FROM orders WHERE id = $1);

-- name: prune_order_events
-- At most $2 events older than $1 days, oldest first.
DELETE FROM order_events
WHERE event_id IN (
    SELECT event_id FROM order_events
    WHERE occurred_at < now() - make_interval(days => $1)
    ORDER BY occurred_at
    LIMIT $2
);

-- name: order_streams
SELECT stream_id, version, event_type, payload
FROM order_events
WHERE stream_id = ANY($1::uuid[])
ORDER BY stream_id, version;

-- name: orders_for_fold_check
-- A batch of orders after the id $1 (keyset), with what the fold of their streams must equal.
SELECT id, status::text AS status, payment_status, version, total_amount::text AS total_amount,
       currency, updated_at,
       ARRAY(SELECT product_id::text || ':' || quantity FROM order_items
             WHERE order_id = orders.id ORDER BY product_id) AS lines
FROM orders
WHERE $1::uuid IS NULL OR id > $1
ORDER BY id
LIMIT $2;
