-- What a customer's move reads and deletes while it pauses the customer (fanout shards move),
-- found by index rather than by scanning the shard's whole tables: the idempotency keys of the
-- moving orders, and, for each address the move deletes, the orders its foreign keys check
-- (orders.billing_address_id and shipping_address_id reference addresses). The pause holds the
-- shard's relay horizon for every customer, so its cost must not grow with the shard.

CREATE INDEX idempotency_keys_resource_id ON idempotency_keys (resource_id);
CREATE INDEX orders_billing_address_id ON orders (billing_address_id);
CREATE INDEX orders_shipping_address_id ON orders (shipping_address_id);
