-- A customer's orders, newest first, page after page: the id breaks ties between orders
-- created in the same instant, so that a page ends at an exact (created_at, id).
CREATE INDEX orders_customer_id_created_at_id ON orders (customer_id, created_at DESC, id DESC);
DROP INDEX orders_customer_id_created_at;
