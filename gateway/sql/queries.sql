-- Named queries of the gateway. Each starts with a "-- name:" line (see gateway/queries.py).

-- name: acquire_advisory_lock
SELECT pg_advisory_lock($1);

-- name: release_advisory_lock
SELECT pg_advisory_unlock($1);

-- name: create_migration_history
CREATE TABLE IF NOT EXISTS fanout_schema_migrations (
    version    integer PRIMARY KEY,
    name       text NOT NULL,
    checksum   char(64) NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
);

-- name: list_applied_migrations
SELECT version, name, checksum, applied_at FROM fanout_schema_migrations ORDER BY version;

-- name: record_migration
INSERT INTO fanout_schema_migrations (version, name, checksum) VALUES ($1, $2, $3);

-- name: forget_migration
DELETE FROM fanout_schema_migrations WHERE version = $1;

-- name: append_outbox_event
INSERT INTO outbox (event_id, aggregate_type, aggregate_id, version, event_type, payload, headers)
VALUES ($1, $2, $3, $4, $5, $6, $7);

-- name: claim_idempotency_key
INSERT INTO idempotency_keys (scope, key, request_hash, resource_id, expires_at)
VALUES ($1, $2, $3, $4, now() + make_interval(secs => $5))
ON CONFLICT (scope, key) DO UPDATE
    SET request_hash = EXCLUDED.request_hash,
        resource_id = EXCLUDED.resource_id,
        created_at = now(),
        expires_at = EXCLUDED.expires_at
    WHERE idempotency_keys.expires_at <= now()
RETURNING key;

-- name: get_idempotency_key
SELECT request_hash, resource_id FROM idempotency_keys WHERE scope = $1 AND key = $2;

-- name: purge_expired_idempotency_keys
DELETE FROM idempotency_keys WHERE expires_at <= now();

-- name: get_customer_summary
SELECT id, email, first_name, last_name, is_active FROM customers WHERE id = $1;

-- name: get_addresses
SELECT id, customer_id, address_type FROM addresses WHERE id = ANY($1::uuid[]);

-- name: lock_products
SELECT id, sku, name, base_price, inventory_quantity, is_active
FROM products
WHERE id = ANY($1::uuid[])
ORDER BY id
FOR UPDATE;

-- name: take_inventory
UPDATE products
SET inventory_quantity = products.inventory_quantity - taken.quantity, updated_at = now()
FROM unnest($1::uuid[], $2::integer[]) AS taken (id, quantity)
WHERE products.id = taken.id;

-- name: insert_order
INSERT INTO orders (
    id, order_number, customer_id, subtotal, tax_amount, shipping_amount, total_amount, currency,
    billing_address_id, shipping_address_id, customer_segment, metadata, notes
)
VALUES (
    $1,
    $2 || '-' || to_char(now() AT TIME ZONE 'UTC', 'YYYYMMDD') || '-'
        || lpad(nextval('order_number_seq')::text, 8, '0'),
    $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13
)
RETURNING *;

-- name: insert_order_items
INSERT INTO order_items (
    order_id, product_id, product_name, product_sku, quantity, unit_price, total_price
)
SELECT $1, line.product_id, line.product_name, line.product_sku, line.quantity,
       line.unit_price, line.total_price
FROM unnest($2::uuid[], $3::text[], $4::text[], $5::integer[], $6::numeric[], $7::numeric[])
    AS line (product_id, product_name, product_sku, quantity, unit_price, total_price)
RETURNING *;

-- name: lock_order
SELECT id, status, version FROM orders WHERE id = $1 FOR UPDATE;

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

-- name: set_order_status
UPDATE orders
SET status = $2::order_status, version = version + 1, updated_at = now()
WHERE id = $1
RETURNING *;

-- name: get_order
SELECT * FROM orders WHERE id = $1;

-- name: order_items_of
SELECT * FROM order_items WHERE order_id = $1 ORDER BY id;

-- name: insert_customer
INSERT INTO customers (email, first_name, last_name, phone, date_of_birth)
VALUES ($1, $2, $3, $4, $5)
RETURNING *;

-- name: customer_exists
SELECT EXISTS (SELECT 1 FROM customers WHERE id = $1);

-- name: insert_address
INSERT INTO addresses (
    customer_id, address_type, street_address, city, state, postal_code, country, is_default
)
VALUES ($1, $2::address_type_enum, $3, $4, $5, $6, $7, $8)
RETURNING *;

-- name: insert_category
INSERT INTO categories (name, slug, description, parent_id)
VALUES ($1, $2, $3, $4)
RETURNING *;

-- name: insert_product
INSERT INTO products (sku, name, description, category_id, base_price, inventory_quantity, attributes)
VALUES ($1, $2, $3, $4, $5, $6, $7)
RETURNING *;

-- name: get_demo_customer
SELECT customers.id,
       (SELECT id FROM addresses
        WHERE customer_id = customers.id AND address_type = 'billing' AND is_default) AS billing_id,
       (SELECT id FROM addresses
        WHERE customer_id = customers.id AND address_type = 'shipping' AND is_default) AS shipping_id
FROM customers
WHERE email = $1;

-- name: get_product_id_by_sku
SELECT id FROM products WHERE sku = $1;

-- name: restock_product
UPDATE products
SET inventory_quantity = GREATEST(inventory_quantity, $2), updated_at = now()
WHERE id = $1;

-- name: database_exists
SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1);
