-- The write path: orders, customers, the catalog and idempotency keys
-- (gateway/write_path/: orders.py, orders_report.py, customers.py, catalog.py,
-- idempotency.py), and the outbox's appends (gateway/postgres/outbox.py).
-- Each query starts with a "-- name:" line and runs to the next one. gateway/postgres/queries.py
-- loads every .sql file of this folder; a name is defined in one file only.
-- A "-- fragment:" block is SQL that queries share: a query's "-- include: <fragment>" line is
-- replaced by it (the idempotency key claim, written once for the two queries that claim a key).

-- Outbox appends ------------------------------------------------------------------------------

-- name: append_outbox_event
INSERT INTO outbox (event_id, aggregate_type, aggregate_id, version, event_type, payload, headers)
VALUES ($1, $2, $3, $4, $5, $6, $7);

-- name: append_order_event
-- An order's event: to the outbox for delivery and to the order's stream for good, in one
-- statement (the stream's row takes the outbox row's time).
WITH appended AS (
    INSERT INTO outbox (
        event_id, aggregate_type, aggregate_id, version, event_type, payload, headers
    )
    VALUES ($1, $2, $3, $4, $5, $6, $7)
    RETURNING event_id, aggregate_id, version, event_type, payload, headers, occurred_at
)
INSERT INTO order_events (stream_id, version, event_id, event_type, payload, headers, occurred_at)
SELECT aggregate_id::uuid, version, event_id, event_type, payload, headers, occurred_at
FROM appended;

-- Idempotency keys ----------------------------------------------------------------------------

-- fragment: claim_wanted_key
-- The claim of the key in "wanted_key" (scope, key, request_hash, resource_id,
-- retention_seconds; no row: no key to claim): the key when it is free or expired, else no row.
INSERT INTO idempotency_keys (scope, key, request_hash, resource_id, expires_at)
SELECT scope, key, request_hash, resource_id, now() + make_interval(secs => retention_seconds)
FROM wanted_key
ON CONFLICT (scope, key) DO UPDATE
    SET request_hash = EXCLUDED.request_hash,
        resource_id = EXCLUDED.resource_id,
        created_at = now(),
        expires_at = EXCLUDED.expires_at
    WHERE idempotency_keys.expires_at <= now()
RETURNING key

-- name: claim_idempotency_key
-- $1 scope, $2 key, $3 request hash, $4 resource id, $5 retention seconds.
WITH wanted_key (scope, key, request_hash, resource_id, retention_seconds) AS (
    VALUES ($1::text, $2::text, $3::text, $4::uuid, $5::float8)
)
-- include: claim_wanted_key

-- name: get_idempotency_key
SELECT request_hash, resource_id FROM idempotency_keys WHERE scope = $1 AND key = $2;

-- name: purge_expired_idempotency_keys
DELETE FROM idempotency_keys WHERE expires_at <= now();

-- Orders --------------------------------------------------------------------------------------

-- name: get_customer_summary
SELECT id, email, first_name, last_name, is_active FROM customers WHERE id = $1;

-- name: lock_order_inputs
-- What a new order is checked against, in one round trip: the idempotency key claimed for the
-- order (when a key is given: $4 scope, $5 key, $6 request hash, $7 retention seconds, $8 the
-- order's id; "claimed" is null when another request holds the key), the customer (its
-- columns null when it does not exist), the given addresses that exist and whose they are, and
-- the products, locked in id order (the sort runs below the lock, so concurrent orders over
-- the same products cannot deadlock); one row per product found, or one with null product
-- columns.
WITH wanted_key (scope, key, request_hash, resource_id, retention_seconds) AS (
    SELECT $4::text, $5::text, $6::text, $8::uuid, $7::float8 WHERE $5::text IS NOT NULL
),
claimed AS (
    -- include: claim_wanted_key
)
SELECT (SELECT key FROM claimed) AS claimed,
       customers.id AS customer_id, customers.email, customers.first_name, customers.last_name,
       customers.is_active AS customer_is_active,
       ARRAY(SELECT a.id FROM addresses AS a WHERE a.id = ANY($2::uuid[]) ORDER BY a.id)
           AS address_ids,
       ARRAY(SELECT a.customer_id FROM addresses AS a WHERE a.id = ANY($2::uuid[]) ORDER BY a.id)
           AS address_owners,
       product.id, product.sku, product.name, product.base_price, product.inventory_quantity,
       product.is_active
FROM (VALUES ($1::uuid)) AS wanted (id)
LEFT JOIN customers ON customers.id = wanted.id
LEFT JOIN LATERAL (
    SELECT id, sku, name, base_price, inventory_quantity, is_active
    FROM products
    WHERE id = ANY($3::uuid[])
    ORDER BY id
    FOR UPDATE
) AS product ON true;

-- name: customer_inputs
-- A new order's customer (null columns when it does not exist), its given addresses ($2) and
-- whose they are, and idempotency key ($3 scope, $4 key) while an earlier request keeps it.
SELECT customers.id AS customer_id, customers.email, customers.first_name, customers.last_name,
       customers.is_active AS customer_is_active,
       ARRAY(SELECT a.id FROM addresses AS a WHERE a.id = ANY($2::uuid[]) ORDER BY a.id)
           AS address_ids,
       ARRAY(SELECT a.customer_id FROM addresses AS a WHERE a.id = ANY($2::uuid[]) ORDER BY a.id)
           AS address_owners,
       kept.request_hash, kept.resource_id
FROM (VALUES ($1::uuid)) AS wanted (id)
LEFT JOIN customers ON customers.id = wanted.id
LEFT JOIN idempotency_keys AS kept
    ON kept.scope = $3 AND kept.key = $4::text AND kept.expires_at > now();

-- name: insert_order_with_items
-- The order, its items and the units they take from products already locked (lock_order_inputs),
-- in one statement; one row per item (ordered by its id), the order's columns on each. With a
-- payment timeout ($20 seconds), the order awaits its payment until then. $21 false: take no
-- units (a shard's order, whose units the catalog reserved).
-- Foreign keys are checked at the end of the statement, when the order exists.
WITH placed AS (
    INSERT INTO orders (
        id, order_number, customer_id, subtotal, tax_amount, shipping_amount, total_amount,
        currency, billing_address_id, shipping_address_id, customer_segment, metadata, notes,
        payment_status, payment_due_at
    )
    VALUES (
        $1,
        $2 || '-' || to_char(now() AT TIME ZONE 'UTC', 'YYYYMMDD') || '-'
            || lpad(nextval('order_number_seq')::text, 8, '0'),
        $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13,
        CASE WHEN $20::float8 IS NOT NULL THEN 'awaiting' END,
        now() + make_interval(secs => $20::float8)
    )
    RETURNING *
),
taken AS (
    UPDATE products
    SET inventory_quantity = products.inventory_quantity - line.quantity, updated_at = now()
    FROM unnest($14::uuid[], $17::integer[]) AS line (id, quantity)
    WHERE products.id = line.id AND $21::boolean
),
lines AS (
    INSERT INTO order_items (
        order_id, product_id, product_name, product_sku, quantity, unit_price, total_price
    )
    SELECT $1, line.product_id, line.product_name, line.product_sku, line.quantity,
           line.unit_price, line.total_price
    FROM unnest($14::uuid[], $15::text[], $16::text[], $17::integer[], $18::numeric[],
                $19::numeric[])
        AS line (product_id, product_name, product_sku, quantity, unit_price, total_price)
    RETURNING id AS item_id, product_id, product_name, product_sku, quantity, unit_price,
              total_price
)
SELECT placed.*, lines.*
FROM placed CROSS JOIN lines
ORDER BY lines.item_id;

-- name: lock_order
SELECT id, status, version, payment_status, total_amount, currency
FROM orders
WHERE id = $1
FOR UPDATE;

-- name: lock_order_products
SELECT products.id
FROM products
WHERE products.id IN (SELECT product_id FROM order_items WHERE order_id = $1)
ORDER BY products.id
FOR UPDATE;

-- name: return_inventory
UPDATE products
SET inventory_quantity = products.inventory_quantity + order_items.quantity, updated_at = now()
FROM order_items
WHERE order_items.order_id = $1 AND products.id = order_items.product_id;

-- name: advance_order
-- The order after $4 events: its status and payment status as the last of them leaves them.
UPDATE orders
SET status = $2::order_status,
    payment_status = $3,
    version = version + $4,
    updated_at = now()
WHERE id = $1
RETURNING *;

-- name: get_order
SELECT * FROM orders WHERE id = $1;

-- name: order_items_of
SELECT * FROM order_items WHERE order_id = $1 ORDER BY id;

-- name: customer_orders_page
-- A customer's orders newest first, after the cursor ($2, $3) when one is given.
SELECT *
FROM orders
WHERE customer_id = $1
  AND ($2::timestamptz IS NULL OR (created_at, id) < ($2, $3::uuid))
ORDER BY created_at DESC, id DESC
LIMIT $4;

-- name: order_items_of_orders
SELECT * FROM order_items WHERE order_id = ANY($1::uuid[]) ORDER BY order_id, id;

-- Orders report -------------------------------------------------------------------------------

-- name: orders_report
-- Orders created in [$1, $2), grouped by $3 ('status', 'day' in UTC, or 'segment'), per
-- currency: how many, and their total amount.
SELECT CASE $3::text
           WHEN 'status' THEN status::text
           WHEN 'day' THEN to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD')
           ELSE coalesce(customer_segment, '')
       END AS bucket,
       currency,
       count(*) AS orders,
       sum(total_amount) AS revenue
FROM orders
WHERE created_at >= $1 AND created_at < $2
GROUP BY 1, 2
ORDER BY 1, 2;

-- Customers and catalog -----------------------------------------------------------------------

-- name: insert_customer
-- $6: the customer's id when the caller chose it (sharded mode places the id first), else null.
INSERT INTO customers (id, email, first_name, last_name, phone, date_of_birth)
VALUES (coalesce($6::uuid, gen_random_uuid()), $1, $2, $3, $4, $5)
RETURNING *;

-- name: customer_exists
SELECT EXISTS (SELECT 1 FROM customers WHERE id = $1);

-- name: lock_customer_key
-- In the caller's transaction: whether the customer exists, holding its row's key (what a foreign
-- key to it takes anyway) so that it cannot go, by a move among others, before the transaction
-- ends; waits for a move's pause, then answers for what the pause left.
SELECT EXISTS (SELECT 1 FROM customers WHERE id = $1 FOR KEY SHARE);

-- name: insert_address
INSERT INTO addresses (
    customer_id, address_type, street_address, city, state, postal_code, country, is_default
)
VALUES ($1, $2::address_type_enum, $3, $4, $5, $6, $7, $8)
RETURNING *;

-- name: clear_default_address
UPDATE addresses SET is_default = false
WHERE customer_id = $1 AND address_type = $2::address_type_enum AND is_default;

-- name: insert_category
INSERT INTO categories (name, slug, description, parent_id)
VALUES ($1, $2, $3, $4)
RETURNING *;

-- name: insert_product
INSERT INTO products (sku, name, description, category_id, base_price, inventory_quantity, attributes)
VALUES ($1, $2, $3, $4, $5, $6, $7)
RETURNING *;
