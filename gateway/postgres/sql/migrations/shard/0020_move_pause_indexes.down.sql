DROP INDEX orders_shipping_address_id;
DROP INDEX orders_billing_address_id;
DROP INDEX idempotency_keys_resource_id;
