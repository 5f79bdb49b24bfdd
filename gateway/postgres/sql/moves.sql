-- Moving a customer between shards (gateway/sharding/mover.py): the catalog's record of each
-- move, the customer's rows read on the source, written on the target and deleted from the
-- source, the tombstones the source keeps, and routing's lookups of them.
-- Each query starts with a "-- name:" line and runs to the next one.

-- The catalog's moves ------------------------------------------------------------------------

-- name: move_record
-- A new move; none when the customer has an unfinished one.
INSERT INTO shard_moves (id, customer_id, source, target)
VALUES ($1, $2, $3, $4)
ON CONFLICT (customer_id) WHERE state NOT IN ('done', 'rolled_back') DO NOTHING
RETURNING id;

-- name: move_set_state
-- A finished move keeps its end; one done keeps no error (why it waited is past).
UPDATE shard_moves
SET state = $2,
    last_error = CASE WHEN $2 = 'done' THEN NULL ELSE coalesce($3, last_error) END,
    updated_at = now()
WHERE id = $1 AND state NOT IN ('done', 'rolled_back');

-- name: move_try_lock_customer
-- One process at a time moves customer $2 or finishes its move (a session lock: released by
-- move_unlock_customer, or when the process's connection ends).
SELECT pg_try_advisory_lock($1, hashtext($2::text));

-- name: move_unlock_customer
SELECT pg_advisory_unlock($1, hashtext($2::text));

-- name: move_by_id
SELECT id, customer_id, source, target, state, started_at, updated_at, last_error
FROM shard_moves WHERE id = $1;

-- name: move_unfinished_of_customer
SELECT id, customer_id, source, target, state, started_at, updated_at, last_error
FROM shard_moves WHERE customer_id = $1 AND state NOT IN ('done', 'rolled_back');

-- name: moves_unfinished
SELECT id, customer_id, source, target, state, started_at, updated_at, last_error
FROM shard_moves WHERE state NOT IN ('done', 'rolled_back') ORDER BY started_at;

-- name: moves_listed
-- The unfinished moves and the $1 most recent finished ones, newest first.
(SELECT id, customer_id, source, target, state, started_at, updated_at, last_error
 FROM shard_moves WHERE state NOT IN ('done', 'rolled_back'))
UNION ALL
(SELECT id, customer_id, source, target, state, started_at, updated_at, last_error
 FROM shard_moves WHERE state IN ('done', 'rolled_back') ORDER BY updated_at DESC LIMIT $1)
ORDER BY started_at DESC;

-- name: move_switch_directory
-- The customer's entry now names the target; none when it names another shard than the source.
UPDATE customer_directory SET shard = $3 WHERE customer_id = $1 AND shard IN ($2, $3)
RETURNING customer_id;

-- name: move_switch_reservations
-- The reservations of the moved orders $1 now name the target shard $2.
UPDATE inventory_reservations SET shard = $2 WHERE order_id = ANY($1::uuid[]);

-- The source, in the move's transaction ----------------------------------------------------

-- name: move_lock_customer
SELECT id FROM customers WHERE id = $1 FOR UPDATE;

-- name: move_lock_orders
-- The customer's orders, locked in id order.
SELECT id FROM orders WHERE customer_id = $1 ORDER BY id FOR UPDATE;

-- name: move_late_events
-- Whether events of aggregates $1 were written by a transaction that started after this one
-- took its id: the relay reads below the oldest running transaction, so it cannot deliver
-- those while this one runs.
SELECT EXISTS (
    SELECT 1 FROM outbox
    WHERE aggregate_id = ANY($1::text[]) AND txid > pg_current_xact_id()
);

-- name: move_blocks_writers
-- Whether this transaction's locks hold up a transaction that has taken its id: the relay reads
-- below the oldest running transaction, so while that one waits for this one, it may hold back
-- the very events this one waits to see delivered.
-- Only one older than this one counts: a younger one holds back no event this one waits for
-- (those are late events), and fails on the customer's absence once this one commits.
SELECT EXISTS (
    SELECT 1 FROM pg_stat_activity AS waiting
    WHERE waiting.wait_event_type = 'Lock' AND waiting.backend_xid IS NOT NULL
      AND age(waiting.backend_xid) > age(pg_current_xact_id()::xid)
      AND pg_backend_pid() = ANY(pg_blocking_pids(waiting.pid))
);

-- name: move_undelivered_events
-- How many events of aggregates $1 some registered sink has not passed yet.
SELECT count(*)
FROM outbox
JOIN relay_positions AS positions ON positions.partition = outbox.partition
WHERE outbox.aggregate_id = ANY($1::text[])
  AND (outbox.txid, outbox.id) > (positions.position_txid, positions.position_id);

-- name: move_read_customer
-- Every row of customer $1 and its orders $2, as one JSON document (text, so that no value
-- goes through a client-side type on its way to the target).
SELECT json_build_object(
    'customers', (SELECT coalesce(json_agg(t), '[]') FROM customers AS t WHERE t.id = $1),
    'addresses', (SELECT coalesce(json_agg(t), '[]') FROM addresses AS t WHERE t.customer_id = $1),
    'orders', (SELECT coalesce(json_agg(t), '[]') FROM orders AS t WHERE t.id = ANY($2::uuid[])),
    'order_items',
        (SELECT coalesce(json_agg(t), '[]') FROM order_items AS t WHERE t.order_id = ANY($2::uuid[])),
    'payments',
        (SELECT coalesce(json_agg(t), '[]') FROM payments AS t WHERE t.order_id = ANY($2::uuid[])),
    'order_events',
        (SELECT coalesce(json_agg(t), '[]') FROM order_events AS t WHERE t.stream_id = ANY($2::uuid[])),
    'reservation_decisions',
        (SELECT coalesce(json_agg(t), '[]') FROM reservation_decisions AS t
         WHERE t.order_id = ANY($2::uuid[])),
    'inventory_returns',
        (SELECT coalesce(json_agg(t), '[]') FROM inventory_returns AS t
         WHERE t.order_id = ANY($2::uuid[])),
    'idempotency_keys',
        (SELECT coalesce(json_agg(t), '[]') FROM idempotency_keys AS t
         WHERE t.resource_id = ANY($2::uuid[]))
)::text;

-- name: move_delete_customer
-- Deletes customer $1 and its orders $2 (their decisions stay until the catalog follows), and
-- writes the tombstones: to shard $3, by move $4, the customer's keeping the rows moved ($5,
-- move_read_customer's document) until the target holds them. No events: the rows live on
-- elsewhere.
WITH keys AS (
    DELETE FROM idempotency_keys WHERE resource_id = ANY($2::uuid[])
), returns AS (
    DELETE FROM inventory_returns WHERE order_id = ANY($2::uuid[])
), paid AS (
    DELETE FROM payments WHERE order_id = ANY($2::uuid[])
), history AS (
    DELETE FROM order_events WHERE stream_id = ANY($2::uuid[])
), gone_orders AS (
    DELETE FROM orders WHERE id = ANY($2::uuid[]) RETURNING id
), moved_order AS (
    INSERT INTO moved_orders (order_id, to_shard, move_id)
    SELECT unnest($2::uuid[]), $3::text, $4::uuid
    ON CONFLICT (order_id) DO UPDATE SET to_shard = EXCLUDED.to_shard,
        move_id = EXCLUDED.move_id, moved_at = now()
), moved_customer AS (
    INSERT INTO moved_customers (customer_id, to_shard, move_id, document)
    VALUES ($1, $3::text, $4::uuid, $5::text::jsonb)
    ON CONFLICT (customer_id) DO UPDATE SET to_shard = EXCLUDED.to_shard,
        move_id = EXCLUDED.move_id, document = EXCLUDED.document, moved_at = now()
)
SELECT count(*) FROM gone_orders;

-- name: move_delete_addresses_and_customer
-- After move_delete_customer (the orders that referenced the addresses are gone).
WITH gone_addresses AS (
    DELETE FROM addresses WHERE customer_id = $1
)
DELETE FROM customers WHERE id = $1;

-- name: move_forget_decisions
-- The source's decisions of the orders moved by move $1, once the catalog names the target,
-- and the rows its tombstone kept. An order here again (its customer came back since) keeps
-- its decision.
WITH kept AS (
    UPDATE moved_customers SET document = NULL WHERE customer_id = $2 AND move_id = $1
)
DELETE FROM reservation_decisions AS decision
WHERE decision.order_id IN (SELECT order_id FROM moved_orders WHERE move_id = $1)
  AND NOT EXISTS (SELECT 1 FROM orders WHERE orders.id = decision.order_id);

-- name: move_kept_documents
-- The moves (of customer $1, or everyone's when null) whose rows this shard's tombstones still
-- keep (their last step not run yet).
SELECT move_id FROM moved_customers
WHERE document IS NOT NULL AND ($1::uuid IS NULL OR customer_id = $1::uuid);

-- name: move_document
-- The rows move $2 took of customer $1, as its tombstone keeps them until the target has them.
SELECT document::text FROM moved_customers WHERE customer_id = $1 AND move_id = $2;

-- name: move_moved_order_ids
SELECT order_id FROM moved_orders WHERE move_id = $1;

-- name: move_tombstone_of_customer
SELECT to_shard, move_id FROM moved_customers WHERE customer_id = $1;

-- name: move_tombstone_of_order
SELECT to_shard, move_id FROM moved_orders WHERE order_id = $1;

-- The target ---------------------------------------------------------------------------------

-- name: move_write_customer
-- Writes the document of move_read_customer; how many orders were written. Tombstones this
-- shard kept of the same rows (the customer moved back here) stay: they are read only for rows
-- that are not here, and the next move away writes them anew.
WITH doc AS (
    SELECT $1::text::jsonb AS document
), customer AS (
    INSERT INTO customers
    SELECT * FROM jsonb_populate_recordset(NULL::customers, (SELECT document -> 'customers' FROM doc))
), address AS (
    INSERT INTO addresses
    SELECT * FROM jsonb_populate_recordset(NULL::addresses, (SELECT document -> 'addresses' FROM doc))
), placed AS (
    INSERT INTO orders
    SELECT * FROM jsonb_populate_recordset(NULL::orders, (SELECT document -> 'orders' FROM doc))
    RETURNING id
), item AS (
    INSERT INTO order_items
    SELECT * FROM jsonb_populate_recordset(
        NULL::order_items, (SELECT document -> 'order_items' FROM doc))
), payment AS (
    INSERT INTO payments
    SELECT * FROM jsonb_populate_recordset(NULL::payments, (SELECT document -> 'payments' FROM doc))
), history AS (
    INSERT INTO order_events
    SELECT * FROM jsonb_populate_recordset(
        NULL::order_events, (SELECT document -> 'order_events' FROM doc))
), decision AS (
    -- A decision is written once; this shard may still hold it from an earlier stay of the
    -- customer whose cleanup was cut short.
    INSERT INTO reservation_decisions
    SELECT * FROM jsonb_populate_recordset(
        NULL::reservation_decisions, (SELECT document -> 'reservation_decisions' FROM doc))
    ON CONFLICT (order_id) DO NOTHING
), queued AS (
    INSERT INTO inventory_returns
    SELECT * FROM jsonb_populate_recordset(
        NULL::inventory_returns, (SELECT document -> 'inventory_returns' FROM doc))
    ON CONFLICT (order_id) DO NOTHING
), kept_key AS (
    -- A key this shard holds for another request already stays that request's: a retry of
    -- the moved one is then refused as a key reused with another request, never placed twice.
    INSERT INTO idempotency_keys
    SELECT * FROM jsonb_populate_recordset(
        NULL::idempotency_keys, (SELECT document -> 'idempotency_keys' FROM doc))
    ON CONFLICT DO NOTHING
)
SELECT count(*) FROM placed;

-- name: move_copy_exists
SELECT EXISTS (SELECT 1 FROM customers WHERE id = $1);

-- name: move_hold_arrival
-- On the target, in the copy's transaction: a request that follows move $2's tombstones here and
-- finds nothing takes it too, so it waits until the copy commits or is given up.
SELECT pg_advisory_xact_lock($1, hashtext($2::text));
