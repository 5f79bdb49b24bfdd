DROP INDEX orders_order_number;
ALTER TABLE orders ADD CONSTRAINT orders_order_number_key UNIQUE (order_number);
DROP TABLE moved_orders;
DROP TABLE moved_customers;
