DROP TRIGGER IF EXISTS orders_cancelled_return_units ON orders;
DROP FUNCTION IF EXISTS queue_inventory_return();
DROP TABLE IF EXISTS inventory_returns;
ALTER TABLE order_items
    ADD CONSTRAINT order_items_product_id_fkey FOREIGN KEY (product_id) REFERENCES products (id);
