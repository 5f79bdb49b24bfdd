CREATE INDEX orders_customer_id_created_at ON orders (customer_id, created_at DESC);
DROP INDEX orders_customer_id_created_at_id;
