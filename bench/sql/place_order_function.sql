-- The write path's placement done by the server in one call: the statements of
-- Gateway.place_order (key claim, customer and address checks, products locked and priced,
-- order, items, units taken, the order.placed event in the outbox and the order's stream)
-- with the pricing computed here. Created by bench/write_path.py in its scratch database
-- only: the one-round-trip limit the gateway's placement is measured against.
CREATE FUNCTION bench_utc_text(moment timestamptz) RETURNS text
LANGUAGE sql IMMUTABLE AS $$
    SELECT to_char(moment AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')
$$;

CREATE FUNCTION bench_place_order(
    p_order_id uuid,
    p_customer_id uuid,
    p_billing_address_id uuid,
    p_shipping_address_id uuid,
    p_product_ids uuid[],
    p_quantities integer[],
    p_customer_segment text,
    p_metadata jsonb,
    p_notes text,
    p_key_scope text,
    p_key text,
    p_request_hash text,
    p_retention_seconds float8,
    p_number_prefix text,
    p_payment_timeout_seconds float8,
    p_tax_rate numeric,
    p_shipping_flat numeric,
    p_free_shipping_threshold numeric,
    p_currency text,
    p_event_id uuid,
    p_headers jsonb
) RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    customer record;
    address record;
    product record;
    held record;
    found_products integer := 0;
    subtotal numeric := 0;
    tax numeric;
    shipping numeric;
    placed orders%ROWTYPE;
    order_json jsonb;
    event_payload jsonb;
    occurred timestamptz;
BEGIN
    IF p_key IS NOT NULL THEN
        INSERT INTO idempotency_keys (scope, key, request_hash, resource_id, expires_at)
        VALUES (p_key_scope, p_key, p_request_hash, p_order_id,
                now() + make_interval(secs => p_retention_seconds))
        ON CONFLICT (scope, key) DO UPDATE
            SET request_hash = EXCLUDED.request_hash,
                resource_id = EXCLUDED.resource_id,
                created_at = now(),
                expires_at = EXCLUDED.expires_at
            WHERE idempotency_keys.expires_at <= now();
        IF NOT FOUND THEN
            SELECT request_hash, resource_id INTO held
            FROM idempotency_keys WHERE scope = p_key_scope AND key = p_key;
            IF held.request_hash <> p_request_hash THEN
                RAISE EXCEPTION 'idempotency key % was used with a different request', p_key
                    USING ERRCODE = 'unique_violation';
            END IF;
            RETURN jsonb_build_object('replayed', held.resource_id);
        END IF;
    END IF;

    SELECT id, email, first_name, last_name, is_active INTO customer
    FROM customers WHERE id = p_customer_id;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'customer % not found', p_customer_id USING ERRCODE = 'no_data_found';
    END IF;
    IF NOT customer.is_active THEN
        RAISE EXCEPTION 'customer % is not active', p_customer_id
            USING ERRCODE = 'check_violation';
    END IF;
    FOR address IN
        SELECT wanted.id, a.customer_id
        FROM unnest(ARRAY[p_billing_address_id, p_shipping_address_id]) AS wanted (id)
        LEFT JOIN addresses AS a ON a.id = wanted.id
    LOOP
        IF address.customer_id IS NULL THEN
            RAISE EXCEPTION 'address % not found', address.id USING ERRCODE = 'no_data_found';
        END IF;
        IF address.customer_id <> p_customer_id THEN
            RAISE EXCEPTION 'address % does not belong to customer %', address.id, p_customer_id
                USING ERRCODE = 'check_violation';
        END IF;
    END LOOP;

    -- Locked in id order, as the gateway locks them (concurrent orders cannot deadlock).
    FOR product IN
        SELECT p.id, p.base_price, p.inventory_quantity, p.is_active, line.quantity
        FROM products AS p
        JOIN unnest(p_product_ids, p_quantities) AS line (id, quantity) ON line.id = p.id
        ORDER BY p.id
        FOR UPDATE OF p
    LOOP
        found_products := found_products + 1;
        IF NOT product.is_active THEN
            RAISE EXCEPTION 'product % is not for sale', product.id
                USING ERRCODE = 'check_violation';
        END IF;
        IF product.inventory_quantity < product.quantity THEN
            RAISE EXCEPTION 'product % has % units, % wanted', product.id,
                product.inventory_quantity, product.quantity USING ERRCODE = 'check_violation';
        END IF;
        subtotal := subtotal + round(product.base_price, 2) * product.quantity;
    END LOOP;
    IF found_products <> cardinality(p_product_ids) THEN
        RAISE EXCEPTION 'an item''s product was not found' USING ERRCODE = 'no_data_found';
    END IF;
    subtotal := round(subtotal, 2);
    shipping := CASE
        WHEN p_free_shipping_threshold IS NOT NULL AND subtotal >= p_free_shipping_threshold
            THEN 0.00
        ELSE round(p_shipping_flat, 2)
    END;
    tax := round(subtotal * p_tax_rate, 2);

    INSERT INTO orders (
        id, order_number, customer_id, subtotal, tax_amount, shipping_amount, total_amount,
        currency, billing_address_id, shipping_address_id, customer_segment, metadata, notes,
        payment_status, payment_due_at
    )
    VALUES (
        p_order_id,
        p_number_prefix || '-' || to_char(now() AT TIME ZONE 'UTC', 'YYYYMMDD') || '-'
            || lpad(nextval('order_number_seq')::text, 8, '0'),
        p_customer_id, subtotal, tax, shipping, subtotal + tax + shipping, p_currency,
        p_billing_address_id, p_shipping_address_id, p_customer_segment, p_metadata, p_notes,
        CASE WHEN p_payment_timeout_seconds IS NOT NULL THEN 'awaiting' END,
        now() + make_interval(secs => p_payment_timeout_seconds)
    )
    RETURNING * INTO placed;

    UPDATE products
    SET inventory_quantity = products.inventory_quantity - line.quantity, updated_at = now()
    FROM unnest(p_product_ids, p_quantities) AS line (id, quantity)
    WHERE products.id = line.id;

    WITH lines AS (
        INSERT INTO order_items (
            order_id, product_id, product_name, product_sku, quantity, unit_price, total_price
        )
        SELECT p_order_id, p.id, p.name, p.sku, line.quantity, round(p.base_price, 2),
               round(p.base_price, 2) * line.quantity
        FROM unnest(p_product_ids, p_quantities) WITH ORDINALITY AS line (id, quantity, n)
        JOIN products AS p ON p.id = line.id
        ORDER BY line.n
        RETURNING id, product_id, product_name, product_sku, quantity, unit_price, total_price
    )
    -- The order as the gateway's event carries it (money as strings, times in UTC).
    SELECT jsonb_build_object(
        'id', placed.id, 'order_number', placed.order_number,
        'customer_id', placed.customer_id, 'status', placed.status,
        'subtotal', placed.subtotal::text, 'tax_amount', placed.tax_amount::text,
        'shipping_amount', placed.shipping_amount::text,
        'total_amount', placed.total_amount::text, 'currency', placed.currency,
        'billing_address_id', placed.billing_address_id,
        'shipping_address_id', placed.shipping_address_id,
        'customer_segment', placed.customer_segment, 'metadata', placed.metadata,
        'notes', placed.notes, 'version', placed.version,
        'created_at', bench_utc_text(placed.created_at),
        'updated_at', bench_utc_text(placed.updated_at),
        'payment_status', placed.payment_status,
        'payment_due_at', bench_utc_text(placed.payment_due_at),
        'items', (
            SELECT jsonb_agg(jsonb_build_object(
                'id', lines.id, 'product_id', lines.product_id,
                'product_name', lines.product_name, 'product_sku', lines.product_sku,
                'quantity', lines.quantity, 'unit_price', lines.unit_price::text,
                'total_price', lines.total_price::text
            ) ORDER BY lines.id)
            FROM lines
        )
    )
    INTO order_json;

    event_payload := order_json || jsonb_build_object('customer', jsonb_build_object(
        'id', customer.id, 'email', customer.email,
        'first_name', customer.first_name, 'last_name', customer.last_name
    ));
    WITH appended AS (
        INSERT INTO outbox (
            event_id, aggregate_type, aggregate_id, version, event_type, payload, headers
        )
        VALUES (p_event_id, 'order', p_order_id::text, placed.version, 'order.placed',
                event_payload, p_headers)
        RETURNING event_id, aggregate_id, version, event_type, payload, headers, occurred_at
    )
    INSERT INTO order_events (
        stream_id, version, event_id, event_type, payload, headers, occurred_at
    )
    SELECT aggregate_id::uuid, version, event_id, event_type, payload, headers, occurred_at
    FROM appended;
    RETURN order_json;
END
$$;
