DROP TABLE payments;
DROP INDEX orders_payment_due;
ALTER TABLE orders
    DROP CONSTRAINT orders_payment_status_known,
    DROP COLUMN payment_due_at,
    DROP COLUMN payment_status;
DROP TABLE order_events;
