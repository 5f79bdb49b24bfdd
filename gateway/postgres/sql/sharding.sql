-- Sharded mode (gateway/sharding/): the customer directory, the catalog's inventory
-- reservations and their decisions, the saga's storage on each shard (the sweeper's and
-- reconcile's pages), and the shards' status.
-- Each query starts with a "-- name:" line and runs to the next one. gateway/postgres/queries.py
-- loads every .sql file of this folder; a name is defined in one file only.

-- Customer directory --------------------------------------------------------------------------

-- name: directory_shard_of
SELECT shard FROM customer_directory WHERE customer_id = $1;

-- name: directory_record
-- The new customer's entry; none when the email is taken.
INSERT INTO customer_directory (customer_id, shard, email)
VALUES ($1, $2, $3)
ON CONFLICT (email) DO NOTHING
RETURNING customer_id;

-- name: directory_entry_by_email
SELECT customer_id, shard FROM customer_directory WHERE email = $1;

-- name: directory_forget
DELETE FROM customer_directory WHERE customer_id = $1;

-- name: directory_customers_per_shard
SELECT shard, count(*) AS customers FROM customer_directory GROUP BY shard;

-- name: directory_page
SELECT customer_id, shard
FROM customer_directory
WHERE $1::uuid IS NULL OR customer_id > $1
ORDER BY customer_id
LIMIT $2;

-- Inventory reservations (the catalog) --------------------------------------------------------

-- name: lock_products_to_reserve
-- In id order, so that concurrent reservations over the same products cannot deadlock.
SELECT id, sku, name, base_price, inventory_quantity, is_active
FROM products
WHERE id = ANY($1::uuid[])
ORDER BY id
FOR UPDATE;

-- name: products_by_id
SELECT id, sku, name, base_price, inventory_quantity, is_active
FROM products
WHERE id = ANY($1::uuid[]);

-- name: held_reservation_by_key
-- Without a row lock: reserve looks for it before and after locking the products, and a lock
-- on the reservation taken before the products would invert the order settle takes them in
-- (products first), a deadlock under concurrent duplicates.
SELECT order_id, request_hash
FROM inventory_reservations
WHERE shard = $1 AND idempotency_key = $2 AND status = 'held';

-- name: insert_reservation
-- Takes the units of products already locked (lock_products_to_reserve) for order $1 and
-- records them, open for $8 seconds; nothing (no row) when another open reservation of shard
-- $2 holds the idempotency key $6.
WITH reserved AS (
    INSERT INTO inventory_reservations (
        order_id, shard, customer_id, product_ids, quantities, idempotency_key, request_hash,
        expires_at
    )
    VALUES ($1, $2, $3, $4, $5, $6, $7, now() + make_interval(secs => $8::float8))
    ON CONFLICT (shard, idempotency_key) WHERE status = 'held' AND idempotency_key IS NOT NULL
        DO NOTHING
    RETURNING order_id
),
taken AS (
    UPDATE products
    SET inventory_quantity = products.inventory_quantity - line.quantity, updated_at = now()
    FROM unnest($4::uuid[], $5::integer[]) AS line (id, quantity)
    WHERE products.id = line.id AND EXISTS (SELECT 1 FROM reserved)
)
SELECT order_id FROM reserved;

-- name: settle_reservation
-- Moves reservation $1 from one of the statuses $2 to $3 (a new version when $4: the change
-- has an event); no row when it is in none of them, or when $5 is given and the reservation
-- names another shard (a move's catalog step named the order's new shard meanwhile).
UPDATE inventory_reservations
SET status = $3, version = version + $4::boolean::integer, settled_at = now()
WHERE order_id = $1 AND status = ANY($2::text[]) AND ($5::text IS NULL OR shard = $5::text)
RETURNING order_id, shard, customer_id, product_ids, quantities, version;

-- name: lock_products_in_order
SELECT id FROM products WHERE id = ANY($1::uuid[]) ORDER BY id FOR UPDATE;

-- name: restore_units
UPDATE products
SET inventory_quantity = products.inventory_quantity + line.quantity, updated_at = now()
FROM unnest($1::uuid[], $2::integer[]) AS line (id, quantity)
WHERE products.id = line.id;

-- name: reservation_products
SELECT product_ids FROM inventory_reservations WHERE order_id = $1;

-- name: reservation_status
SELECT status FROM inventory_reservations WHERE order_id = $1;

-- name: expired_reservations
-- Up to $2 held reservations of shard $1 past their expiry, oldest first.
SELECT order_id
FROM inventory_reservations
WHERE status = 'held' AND shard = $1 AND expires_at <= now()
ORDER BY expires_at
LIMIT $2;

-- name: shards_with_expired_reservations
SELECT DISTINCT shard FROM inventory_reservations WHERE status = 'held' AND expires_at <= now();

-- name: retake_reservation
-- Commits again the released or returned reservation of order $1, whose products are locked
-- (lock_products_in_order) and hold its units; no row when it is in another status.
UPDATE inventory_reservations
SET status = 'committed', version = version + 1, settled_at = now()
WHERE order_id = $1 AND status IN ('released', 'returned')
RETURNING order_id, shard, customer_id, product_ids, quantities, version;

-- name: take_units
UPDATE products
SET inventory_quantity = products.inventory_quantity - line.quantity, updated_at = now()
FROM unnest($1::uuid[], $2::integer[]) AS line (id, quantity)
WHERE products.id = line.id;

-- name: reservation_lines
SELECT product_ids, quantities FROM inventory_reservations WHERE order_id = $1;

-- Reservation decisions -----------------------------------------------------------------------

-- name: decide_reservation
-- The decision on order $1's reservation: $2 when none was taken yet, else the one taken
-- (waiting for a transaction that is taking one). The no-op update returns the kept row.
-- 'moved', and nothing recorded, when the order moved away from this shard: its tombstone is
-- here and the order is not (the decision went with it; a move's last step deletes the one
-- left here).
WITH moved AS (
    SELECT 1 FROM moved_orders
    WHERE order_id = $1::uuid AND NOT EXISTS (SELECT 1 FROM orders WHERE id = $1::uuid)
), decided AS (
    INSERT INTO reservation_decisions (order_id, decision)
    SELECT $1::uuid, $2::text WHERE NOT EXISTS (SELECT 1 FROM moved)
    ON CONFLICT (order_id) DO UPDATE SET decision = reservation_decisions.decision
    RETURNING decision
)
SELECT coalesce((SELECT decision FROM decided), 'moved');

-- The saga's storage --------------------------------------------------------------------------

-- name: set_lock_timeout
-- For the rest of the transaction: a lock not granted within $1 fails the statement.
SELECT set_config('lock_timeout', $1, true);

-- name: set_idle_timeout
-- For the rest of the transaction: the server ends it when it sits idle for $1.
SELECT set_config('idle_in_transaction_session_timeout', $1, true);

-- name: reservations_of_orders
SELECT order_id, status FROM inventory_reservations WHERE order_id = ANY($1::uuid[]);

-- name: committed_reservations_page
SELECT order_id AS id, shard
FROM inventory_reservations
WHERE status = 'committed' AND ($1::uuid IS NULL OR order_id > $1)
ORDER BY order_id
LIMIT $2;

-- name: live_orders_page
SELECT id, status
FROM orders
WHERE status <> 'cancelled' AND ($1::uuid IS NULL OR id > $1)
ORDER BY id
LIMIT $2;

-- name: lock_order_status
SELECT status, version FROM orders WHERE id = $1 FOR UPDATE;

-- name: existing_orders
SELECT id, status FROM orders WHERE id = ANY($1::uuid[]);

-- name: moved_orders_of
SELECT order_id, to_shard FROM moved_orders WHERE order_id = ANY($1::uuid[]);

-- name: queued_inventory_returns
SELECT order_id FROM inventory_returns ORDER BY queued_at LIMIT $1;

-- name: forget_inventory_returns
DELETE FROM inventory_returns WHERE order_id = ANY($1::uuid[]);

-- Shards --------------------------------------------------------------------------------------

-- name: address_exists
SELECT EXISTS (SELECT 1 FROM addresses WHERE id = $1);

-- name: shard_counts
SELECT (SELECT count(*) FROM customers) AS customers, (SELECT count(*) FROM orders) AS orders;
