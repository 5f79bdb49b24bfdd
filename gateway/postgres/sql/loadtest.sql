-- The load test's checks (gateway/loadtest/runner.py): its customers' orders and payments.
-- Each query starts with a "-- name:" line and runs to the next one. gateway/postgres/queries.py
-- loads every .sql file of this folder; a name is defined in one file only.

-- name: count_orders_of_customers_by_email
SELECT count(*)
FROM orders
JOIN customers ON customers.id = orders.customer_id
WHERE customers.email LIKE $1;

-- name: count_awaiting_payment_of_customers_by_email
SELECT count(*)
FROM orders
JOIN customers ON customers.id = orders.customer_id
WHERE customers.email LIKE $1 AND orders.status = 'pending' AND orders.payment_due_at IS NOT NULL;

-- name: payment_statuses_of_customers_by_email
SELECT coalesce(orders.payment_status, 'none') AS payment_status, count(*) AS orders
FROM orders
JOIN customers ON customers.id = orders.customer_id
WHERE customers.email LIKE $1
GROUP BY 1
ORDER BY 1;
