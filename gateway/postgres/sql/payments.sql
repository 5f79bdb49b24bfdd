-- Payments (gateway/payments/recording.py): notifications recorded, and orders whose
-- payment is overdue.
-- Each query starts with a "-- name:" line and runs to the next one. gateway/postgres/queries.py
-- loads every .sql file of this folder; a name is defined in one file only.

-- name: get_payment
SELECT payment_id, order_id, status, amount, currency, outcome FROM payments WHERE payment_id = $1;

-- name: insert_payment
-- Nothing when the payment id is recorded already (by a delivery that raced this one).
INSERT INTO payments (payment_id, order_id, status, amount, currency, occurred_at, outcome)
VALUES ($1, $2, $3, $4, $5, $6, $7)
ON CONFLICT (payment_id) DO NOTHING
RETURNING payment_id;

-- name: lock_due_unpaid_orders
-- Pending orders whose payment is overdue, oldest due first; those a payment holds are skipped
-- (the payment decides them, and the next sweep sees what it left).
SELECT id
FROM orders
WHERE status = 'pending' AND payment_due_at <= now()
ORDER BY payment_due_at, id
LIMIT $1
FOR UPDATE SKIP LOCKED;

-- name: lock_products_of_orders
-- In id order, as every writer locks products, so that no two transactions deadlock.
SELECT products.id
FROM products
WHERE products.id IN (SELECT product_id FROM order_items WHERE order_id = ANY($1::uuid[]))
ORDER BY products.id
FOR UPDATE;
