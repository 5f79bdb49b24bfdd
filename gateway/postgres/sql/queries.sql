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

-- name: append_order_event
-- An order's event: to the outbox for delivery and to the order's stream for good, in one
-- statement (the stream's row takes the outbox row's time).
WITH appended AS (
    INSERT INTO outbox (
        event_id, aggregate_type, aggregate_id, version, event_type, payload, headers
    )
    VALUES ($1, $2, $3, $4, $5, $6, $7)
    RETURNING event_id, aggregate_id, version, event_type, payload, headers, occurred_at
)
INSERT INTO order_events (stream_id, version, event_id, event_type, payload, headers, occurred_at)
SELECT aggregate_id::uuid, version, event_id, event_type, payload, headers, occurred_at
FROM appended;

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

-- name: lock_order_inputs
-- What a new order is checked against, in one round trip: the idempotency key claimed for the
-- order (when a key is given: $4 scope, $5 key, $6 request hash, $7 retention seconds, $8 the
-- order's id; "claimed" is null when another request holds the key), the customer (its
-- columns null when it does not exist), the given addresses that exist and whose they are, and
-- the products, locked in id order (the sort runs below the lock, so concurrent orders over
-- the same products cannot deadlock); one row per product found, or one with null product
-- columns.
WITH claimed AS (
    INSERT INTO idempotency_keys (scope, key, request_hash, resource_id, expires_at)
    SELECT $4::text, $5::text, $6::text, $8::uuid, now() + make_interval(secs => $7::float8)
    WHERE $5::text IS NOT NULL
    ON CONFLICT (scope, key) DO UPDATE
        SET request_hash = EXCLUDED.request_hash,
            resource_id = EXCLUDED.resource_id,
            created_at = now(),
            expires_at = EXCLUDED.expires_at
        WHERE idempotency_keys.expires_at <= now()
    RETURNING key
)
SELECT (SELECT key FROM claimed) AS claimed,
       customers.id AS customer_id, customers.email, customers.first_name, customers.last_name,
       customers.is_active AS customer_is_active,
       ARRAY(SELECT a.id FROM addresses AS a WHERE a.id = ANY($2::uuid[]) ORDER BY a.id)
           AS address_ids,
       ARRAY(SELECT a.customer_id FROM addresses AS a WHERE a.id = ANY($2::uuid[]) ORDER BY a.id)
           AS address_owners,
       product.id, product.sku, product.name, product.base_price, product.inventory_quantity,
       product.is_active
FROM (VALUES ($1::uuid)) AS wanted (id)
LEFT JOIN customers ON customers.id = wanted.id
LEFT JOIN LATERAL (
    SELECT id, sku, name, base_price, inventory_quantity, is_active
    FROM products
    WHERE id = ANY($3::uuid[])
    ORDER BY id
    FOR UPDATE
) AS product ON true;

-- name: insert_order_with_items
-- The order, its items and the units they take from products already locked (lock_order_inputs),
-- in one statement; one row per item (ordered by its id), the order's columns on each. With a
-- payment timeout ($20 seconds), the order awaits its payment until then. $21 false: take no
-- units (a shard's order, whose units the catalog reserved).
-- Foreign keys are checked at the end of the statement, when the order exists.
WITH placed AS (
    INSERT INTO orders (
        id, order_number, customer_id, subtotal, tax_amount, shipping_amount, total_amount,
        currency, billing_address_id, shipping_address_id, customer_segment, metadata, notes,
        payment_status, payment_due_at
    )
    VALUES (
        $1,
        $2 || '-' || to_char(now() AT TIME ZONE 'UTC', 'YYYYMMDD') || '-'
            || lpad(nextval('order_number_seq')::text, 8, '0'),
        $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13,
        CASE WHEN $20::float8 IS NOT NULL THEN 'awaiting' END,
        now() + make_interval(secs => $20::float8)
    )
    RETURNING *
),
taken AS (
    UPDATE products
    SET inventory_quantity = products.inventory_quantity - line.quantity, updated_at = now()
    FROM unnest($14::uuid[], $17::integer[]) AS line (id, quantity)
    WHERE products.id = line.id AND $21::boolean
),
lines AS (
    INSERT INTO order_items (
        order_id, product_id, product_name, product_sku, quantity, unit_price, total_price
    )
    SELECT $1, line.product_id, line.product_name, line.product_sku, line.quantity,
           line.unit_price, line.total_price
    FROM unnest($14::uuid[], $15::text[], $16::text[], $17::integer[], $18::numeric[],
                $19::numeric[])
        AS line (product_id, product_name, product_sku, quantity, unit_price, total_price)
    RETURNING id AS item_id, product_id, product_name, product_sku, quantity, unit_price,
              total_price
)
SELECT placed.*, lines.*
FROM placed CROSS JOIN lines
ORDER BY lines.item_id;

-- name: lock_order
SELECT id, status, version, payment_status, total_amount, currency
FROM orders
WHERE id = $1
FOR UPDATE;

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

-- name: advance_order
-- The order after $4 events: its status and payment status as the last of them leaves them.
UPDATE orders
SET status = $2::order_status,
    payment_status = $3,
    version = version + $4,
    updated_at = now()
WHERE id = $1
RETURNING *;

-- name: get_order
SELECT * FROM orders WHERE id = $1;

-- name: order_items_of
SELECT * FROM order_items WHERE order_id = $1 ORDER BY id;

-- name: insert_customer
-- $6: the customer's id when the caller chose it (sharded mode places the id first), else null.
INSERT INTO customers (id, email, first_name, last_name, phone, date_of_birth)
VALUES (coalesce($6::uuid, gen_random_uuid()), $1, $2, $3, $4, $5)
RETURNING *;

-- name: customer_exists
SELECT EXISTS (SELECT 1 FROM customers WHERE id = $1);

-- name: insert_address
INSERT INTO addresses (
    customer_id, address_type, street_address, city, state, postal_code, country, is_default
)
VALUES ($1, $2::address_type_enum, $3, $4, $5, $6, $7, $8)
RETURNING *;

-- name: clear_default_address
UPDATE addresses SET is_default = false
WHERE customer_id = $1 AND address_type = $2::address_type_enum AND is_default;

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

-- Relay: reading and pruning the outbox ------------------------------------------------------

-- name: read_outbox_batch
-- Only below the oldest running transaction: a transaction that commits later than others
-- with higher ids is never skipped, because nothing past it is read until it ends.
-- outbox_batch (migration 0004) holds the query, planned to stop after the batch.
-- txid and partition come first, then the fields of an EventEnvelope in its order (the id
-- is its sequence), so outbox.read_batch builds each event from a slice of the row; it checks
-- these names against outbox.BATCH_COLUMNS.
SELECT txid, partition, event_id, id AS sequence, aggregate_type, aggregate_id, version,
       event_type, payload, headers, occurred_at
FROM outbox_batch($1::xid8, $2::bigint, $3::smallint[], $4::integer);

-- name: read_earlier_versions
-- For each aggregate $1[i], its events with a version below $2[i] that lie past position
-- ($3, $4), whether or not the batch read could reach them yet: they are committed (the
-- aggregate's later version was written after them), so an ordered sink publishes them first.
-- Same columns as read_outbox_batch.
SELECT o.txid, o.partition, o.event_id, o.id AS sequence, o.aggregate_type, o.aggregate_id,
       o.version, o.event_type, o.payload, o.headers, o.occurred_at
FROM unnest($1::text[], $2::integer[]) AS later(aggregate_id, version)
JOIN outbox o ON o.aggregate_id = later.aggregate_id AND o.version < later.version
WHERE (o.txid, o.id) > ($3::xid8, $4::bigint)
ORDER BY o.txid, o.id;

-- name: outbox_events_for_log_check
-- Every retained event, and whether sink $1 should have published it: its position is passed
-- and it is not a dead letter still waiting (a replayed one was published).
SELECT o.event_id::text AS event_id, o.aggregate_type,
       (o.txid, o.id) <= (p.position_txid, p.position_id)
       AND NOT EXISTS (
           SELECT 1 FROM dead_letters d
           WHERE d.sink = $1 AND d.event_id = o.event_id AND d.replayed_at IS NULL
       ) AS expected
FROM outbox o
JOIN relay_positions p ON p.sink = $1 AND p.partition = o.partition;

-- name: prune_outbox
-- Deletes old events every registered sink has passed, oldest first, at most $2 of them.
WITH floors AS (
    SELECT DISTINCT ON (partition) partition, position_txid, position_id
    FROM relay_positions
    ORDER BY partition, position_txid, position_id
), doomed AS (
    SELECT outbox.id
    FROM outbox
    JOIN floors ON floors.partition = outbox.partition
    WHERE (outbox.txid, outbox.id) <= (floors.position_txid, floors.position_id)
      AND outbox.occurred_at < now() - make_interval(secs => $1)
    ORDER BY outbox.txid, outbox.id
    LIMIT $2
)
DELETE FROM outbox WHERE id IN (SELECT id FROM doomed);

-- name: outbox_backlog
-- Per sink: events not yet delivered, and the age of the oldest (migration 0005).
SELECT sink, backlog, oldest_age_seconds FROM outbox_backlog() ORDER BY sink;

-- Relay: positions, leases, instances ---------------------------------------------------------

-- name: register_sink
-- A new sink starts before every event ($2 = true) or at the oldest running transaction.
INSERT INTO relay_positions (sink, partition, position_txid, position_id)
SELECT $1,
       partition,
       CASE WHEN $2 THEN '0'::xid8 ELSE pg_snapshot_xmin(pg_current_snapshot()) END,
       0
FROM generate_series(0, $3::integer - 1) AS partition
ON CONFLICT (sink, partition) DO NOTHING;

-- name: sink_positions
SELECT partition, position_txid, position_id
FROM relay_positions
WHERE sink = $1 AND partition = ANY($2::smallint[]);

-- name: heartbeat_instance
-- $4: the sinks whose worker has stalled (the relay no longer serves them).
INSERT INTO relay_instances (id, hostname, pid, stalled_sinks) VALUES ($1, $2, $3, $4)
ON CONFLICT (id) DO UPDATE SET heartbeat_at = now(), stalled_sinks = EXCLUDED.stalled_sinks;

-- name: live_instances
WITH stale AS (
    DELETE FROM relay_instances WHERE heartbeat_at < now() - make_interval(secs => $1)
)
SELECT id, stalled_sinks
FROM relay_instances
WHERE heartbeat_at >= now() - make_interval(secs => $1)
ORDER BY id;

-- name: forget_instance
DELETE FROM relay_instances WHERE id = $1;

-- name: renew_instance_leases
-- Every lease the relay $1 holds, on any sink but the stalled ones ($3): a relay that is
-- alive keeps its partitions, even while one of its workers spends longer than a lease on
-- one batch, unless that worker is stuck in a call past its timeout.
UPDATE relay_positions
SET lease_expires_at = now() + make_interval(secs => $2)
WHERE owner = $1 AND sink <> ALL($3::varchar[]);

-- name: renew_leases
UPDATE relay_positions
SET lease_expires_at = now() + make_interval(secs => $3)
WHERE sink = $1 AND owner = $2
RETURNING partition;

-- name: claim_leases
-- Takes those of the partitions $3 that no live lease covers (or that $2 holds already).
UPDATE relay_positions
SET owner = $2, lease_expires_at = now() + make_interval(secs => $4)
WHERE sink = $1
  AND partition = ANY($3::smallint[])
  AND (owner IS NULL OR owner = $2 OR lease_expires_at < now())
RETURNING partition;

-- name: release_leases
UPDATE relay_positions
SET owner = NULL, lease_expires_at = NULL, retrying = 0
WHERE sink = $1 AND owner = $2 AND partition = ANY($3::smallint[]);

-- name: unowned_partitions
SELECT count(*)
FROM relay_positions
WHERE sink = $1 AND (owner IS NULL OR lease_expires_at < now());

-- name: commit_without_flush
-- A batch's commit need not wait for its WAL flush: if a crash loses it, its events are
-- delivered again, and every sink's write is idempotent.
SET LOCAL synchronous_commit TO off;

-- name: advance_positions
-- Fenced: only the lease owner moves a position, and only forwards.
UPDATE relay_positions AS positions
SET position_txid = moved.txid,
    position_id = moved.id,
    delivered_total = positions.delivered_total + moved.delivered,
    retrying = 0,
    last_error = NULL,
    updated_at = now()
FROM unnest($2::smallint[], $3::xid8[], $4::bigint[], $5::bigint[])
    AS moved (partition, txid, id, delivered)
WHERE positions.sink = $1
  AND positions.partition = moved.partition
  AND positions.owner = $6
  AND (positions.position_txid, positions.position_id) < (moved.txid, moved.id)
RETURNING positions.partition;

-- name: record_retrying
-- Each partition counts the events of its own that wait for a retry, so the sum over the
-- partitions counts each event once.
UPDATE relay_positions AS positions
SET retrying = counted.retrying,
    last_error = CASE WHEN counted.retrying > 0 THEN $4 ELSE positions.last_error END,
    updated_at = now()
FROM unnest($2::smallint[], $3::integer[]) AS counted (partition, retrying)
WHERE positions.sink = $1 AND positions.owner = $5 AND positions.partition = counted.partition;

-- Relay: dead letters -------------------------------------------------------------------------

-- name: insert_dead_letter
INSERT INTO dead_letters (
    sink, outbox_id, event_id, aggregate_type, aggregate_id, version, event_type, payload,
    headers, occurred_at, reason, last_error, attempts
)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)
ON CONFLICT (sink, event_id) DO UPDATE
    SET reason = EXCLUDED.reason,
        last_error = EXCLUDED.last_error,
        attempts = dead_letters.attempts + EXCLUDED.attempts,
        dead_at = now(),
        replay_requested_at = NULL,
        replayed_at = NULL;

-- name: list_dead_letters
SELECT id, sink, outbox_id, event_id, aggregate_type, aggregate_id, version, event_type,
       reason, last_error, attempts, dead_at, replay_requested_at
FROM dead_letters
WHERE replayed_at IS NULL AND ($1::text IS NULL OR sink = $1)
ORDER BY id
LIMIT $2;

-- name: request_replay
UPDATE dead_letters
SET replay_requested_at = now()
WHERE sink = $1 AND replayed_at IS NULL AND ($2::uuid IS NULL OR event_id = $2)
RETURNING id;

-- name: claim_replays
-- A claim with an expiry rather than a row lock held during delivery: a transaction kept open
-- while a sink works would hold back every relay's reads (they stop at the oldest running one).
UPDATE dead_letters
SET replay_claimed_by = $3, replay_claimed_until = now() + make_interval(secs => $4)
WHERE id IN (
    SELECT id FROM dead_letters
    WHERE sink = $1 AND replay_requested_at IS NOT NULL AND replayed_at IS NULL
      AND (replay_claimed_until IS NULL OR replay_claimed_until < now())
    ORDER BY id
    LIMIT $2
    FOR UPDATE SKIP LOCKED
)
RETURNING id, outbox_id, event_id, aggregate_type, aggregate_id, version, event_type, payload,
          headers, occurred_at, attempts;

-- name: mark_replayed
UPDATE dead_letters
SET replayed_at = now(), replay_claimed_by = NULL, replay_claimed_until = NULL
WHERE id = ANY($1::bigint[]);

-- name: replay_failed
UPDATE dead_letters AS letters
SET last_error = failed.error,
    attempts = letters.attempts + 1,
    replay_claimed_by = NULL,
    replay_claimed_until = NULL,
    replay_requested_at = CASE WHEN failed.keep_requested THEN letters.replay_requested_at END
FROM unnest($1::bigint[], $2::text[], $3::boolean[]) AS failed (id, error, keep_requested)
WHERE letters.id = failed.id;

-- name: sink_totals
-- Per sink, with whether a live lease serves it, and how long since a relay last moved a
-- position of it or held a lease on it.
SELECT positions.sink,
       sum(positions.delivered_total)::bigint AS delivered,
       sum(positions.retrying)::bigint AS retrying,
       max(positions.last_error) AS last_error,
       count(DISTINCT positions.owner) AS relays,
       bool_or(positions.owner IS NOT NULL AND positions.lease_expires_at >= now()) AS served,
       greatest(
           extract(epoch FROM now() - greatest(max(positions.updated_at),
                                              max(positions.lease_expires_at))),
           0
       )::float8 AS unserved_seconds,
       (SELECT count(*) FROM dead_letters
        WHERE dead_letters.sink = positions.sink AND dead_letters.replayed_at IS NULL)
           AS dead_lettered
FROM relay_positions AS positions
GROUP BY positions.sink
ORDER BY positions.sink;

-- name: lock_sink_positions
SELECT owner, lease_expires_at >= now() AS leased
FROM relay_positions
WHERE sink = $1
FOR UPDATE;

-- name: delete_sink_positions
DELETE FROM relay_positions WHERE sink = $1;

-- name: delete_sink_dead_letters
DELETE FROM dead_letters WHERE sink = $1;

-- name: sink_has_work
-- Whether any partition of the sink has a readable event past its position, or a replay waits.
-- Each partition asks outbox_batch for one event, so the (txid, id) index is walked from its
-- position; a plain filter on the partition is planned as a scan of the whole outbox.
SELECT EXISTS (
    SELECT 1
    FROM relay_positions AS positions
    CROSS JOIN LATERAL outbox_batch(
        positions.position_txid, positions.position_id, ARRAY[positions.partition], 1
    ) AS pending
    WHERE positions.sink = $1
) OR EXISTS (
    SELECT 1 FROM dead_letters
    WHERE sink = $1 AND replay_requested_at IS NOT NULL AND replayed_at IS NULL
);

-- name: try_advisory_xact_lock
SELECT pg_try_advisory_xact_lock($1);

-- Verification ------------------------------------------------------------------------------

-- name: orders_for_verification
SELECT id::text AS id, version, status::text AS status, total_amount::text AS total,
       created_at, updated_at
FROM orders
ORDER BY updated_at, id;

-- name: count_known_orders
SELECT count(*) FROM orders WHERE id = ANY($1::uuid[]);

-- Doctor: PostgreSQL health ---------------------------------------------------------------------

-- name: doctor_server
SELECT current_setting('server_version') AS server_version,
       current_database() AS database,
       pg_database_size(current_database()) AS database_bytes,
       (SELECT stats_reset FROM pg_stat_database WHERE datname = current_database())
           AS statistics_reset_at;

-- name: doctor_connections
-- Client connections to this database (other than the doctor's own) by state, with the age
-- of the longest in that state and of the oldest open transaction.
SELECT coalesce(state, 'unknown') AS state,
       count(*) AS connections,
       extract(epoch FROM max(now() - state_change))::float8 AS longest_in_state_seconds,
       extract(epoch FROM max(now() - xact_start))::float8 AS oldest_transaction_seconds,
       count(*) FILTER (WHERE wait_event_type = 'Lock') AS waiting_on_locks
FROM pg_stat_activity
WHERE datname = current_database()
  AND backend_type = 'client backend'
  AND pid <> pg_backend_pid()
GROUP BY 1
ORDER BY connections DESC, state;

-- name: doctor_locks
-- Locks held or awaited by sessions of this database, per relation (or lock type) and mode.
SELECT coalesce(locks.relation::regclass::text, locks.locktype) AS relation,
       locks.mode,
       locks.granted,
       count(*) AS locks,
       count(DISTINCT locks.pid) AS sessions
FROM pg_locks AS locks
JOIN pg_stat_activity AS activity ON activity.pid = locks.pid
WHERE activity.datname = current_database()
  AND locks.pid <> pg_backend_pid()
GROUP BY 1, 2, 3
ORDER BY locks.granted, locks DESC, relation, locks.mode;

-- name: doctor_statements_extension
SELECT extversion FROM pg_extension WHERE extname = 'pg_stat_statements';

-- name: doctor_slowest_statements
-- The statements of this database with the highest mean execution time.
SELECT queryid::text AS queryid,
       left(regexp_replace(query, '\s+', ' ', 'g'), 200) AS query,
       calls,
       round(total_exec_time::numeric, 3)::float8 AS total_ms,
       round(mean_exec_time::numeric, 3)::float8 AS mean_ms,
       round(max_exec_time::numeric, 3)::float8 AS max_ms,
       rows
FROM pg_stat_statements
WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())
ORDER BY mean_exec_time DESC
LIMIT $1;

-- name: doctor_index_usage
-- Every index of the user's tables with its scans since the statistics were reset.
SELECT stats.schemaname AS schema,
       stats.relname AS table_name,
       stats.indexrelname AS index_name,
       stats.idx_scan AS scans,
       stats.idx_tup_read AS tuples_read,
       pg_relation_size(stats.indexrelid) AS size_bytes,
       idx.indisunique AS is_unique,
       idx.indisprimary AS is_primary
FROM pg_stat_user_indexes AS stats
JOIN pg_index AS idx ON idx.indexrelid = stats.indexrelid
ORDER BY stats.idx_scan, size_bytes DESC, stats.relname, stats.indexrelname;

-- name: doctor_outbox_size
SELECT count(*) AS events, min(occurred_at) AS oldest_event_at FROM outbox;

-- name: orders_for_verification_by_id
SELECT id::text AS id, version, status::text AS status, total_amount::text AS total,
       created_at, updated_at
FROM orders
WHERE id = ANY($1::uuid[]);

-- name: count_orders_of_customers_by_email
SELECT count(*)
FROM orders
JOIN customers ON customers.id = orders.customer_id
WHERE customers.email LIKE $1;

-- name: customer_orders_page
-- A customer's orders newest first, after the cursor ($2, $3) when one is given.
SELECT *
FROM orders
WHERE customer_id = $1
  AND ($2::timestamptz IS NULL OR (created_at, id) < ($2, $3::uuid))
ORDER BY created_at DESC, id DESC
LIMIT $4;

-- name: order_items_of_orders
SELECT * FROM order_items WHERE order_id = ANY($1::uuid[]) ORDER BY order_id, id;

-- name: commit_wal_positions
-- After a commit: whether it waited for its WAL to be flushed, how far WAL is inserted, and
-- how far it is flushed (what a standby can receive).
SELECT current_setting('synchronous_commit') AS synchronous_commit,
       pg_current_wal_insert_lsn()::text AS inserted,
       pg_current_wal_flush_lsn()::text AS flushed;

-- name: replica_replay_lsn
SELECT pg_last_wal_replay_lsn()::text;

-- name: replica_status
-- A standby's recovery, WAL received and replayed, and the age of the last replayed commit.
SELECT pg_is_in_recovery() AS in_recovery,
       pg_last_wal_receive_lsn()::text AS receive_lsn,
       pg_last_wal_replay_lsn()::text AS replay_lsn,
       extract(epoch FROM now() - pg_last_xact_replay_timestamp())::float8 AS since_last_replay,
       -- Without pg_read_all_stats the receiver's row shows, its columns null.
       EXISTS (
           SELECT 1 FROM pg_stat_wal_receiver WHERE status IS NULL OR status = 'streaming'
       ) AS streaming;

-- name: primary_replication
-- The primary's view of each standby streaming from it.
SELECT application_name,
       client_addr::text AS client_addr,
       state,
       sent_lsn::text AS sent_lsn,
       replay_lsn::text AS replay_lsn,
       pg_wal_lsn_diff(sent_lsn, replay_lsn)::bigint AS replay_lag_bytes,
       extract(epoch FROM replay_lag)::float8 AS replay_lag_seconds,
       sync_state
FROM pg_stat_replication
ORDER BY application_name, client_addr;

-- Payments --------------------------------------------------------------------------------------

-- name: get_payment
SELECT payment_id, order_id, status, amount, currency, outcome FROM payments WHERE payment_id = $1;

-- name: insert_payment
-- Nothing when the payment id is recorded already (by a delivery that raced this one).
INSERT INTO payments (payment_id, order_id, status, amount, currency, occurred_at, outcome)
VALUES ($1, $2, $3, $4, $5, $6, $7)
ON CONFLICT (payment_id) DO NOTHING
RETURNING payment_id;

-- name: lock_due_unpaid_orders
-- Pending orders whose payment is overdue, oldest due first; those a payment holds are skipped
-- (the payment decides them, and the next sweep sees what it left).
SELECT id
FROM orders
WHERE status = 'pending' AND payment_due_at <= now()
ORDER BY payment_due_at, id
LIMIT $1
FOR UPDATE SKIP LOCKED;

-- name: lock_products_of_orders
-- In id order, as every writer locks products, so that no two transactions deadlock.
SELECT products.id
FROM products
WHERE products.id IN (SELECT product_id FROM order_items WHERE order_id = ANY($1::uuid[]))
ORDER BY products.id
FOR UPDATE;

-- name: payments_needing_attention
-- Payments someone must act on: amounts that are not the order's, and money to give back.
SELECT payment_id, order_id, status, amount::text AS amount, currency, outcome, received_at
FROM payments
WHERE outcome IN ('mismatch', 'refund_required')
ORDER BY received_at DESC
LIMIT $1;

-- name: count_payments_needing_attention
SELECT outcome, count(*) AS payments
FROM payments
WHERE outcome IN ('mismatch', 'refund_required')
GROUP BY outcome
ORDER BY outcome;

-- Order history -----------------------------------------------------------------------------------

-- name: order_stream
SELECT stream_id, version, event_id, event_type, payload, headers, occurred_at
FROM order_events
WHERE stream_id = $1
ORDER BY version;

-- name: order_streams
SELECT stream_id, version, event_type, payload
FROM order_events
WHERE stream_id = ANY($1::uuid[])
ORDER BY stream_id, version;

-- name: orders_for_fold_check
-- A batch of orders after the id $1 (keyset), with what the fold of their streams must equal.
SELECT id, status::text AS status, payment_status, version, total_amount::text AS total_amount,
       currency, updated_at,
       ARRAY(SELECT product_id::text || ':' || quantity FROM order_items
             WHERE order_id = orders.id ORDER BY product_id) AS lines
FROM orders
WHERE $1::uuid IS NULL OR id > $1
ORDER BY id
LIMIT $2;

-- name: prune_order_events
-- At most $2 events older than $1 days, oldest first.
DELETE FROM order_events
WHERE event_id IN (
    SELECT event_id FROM order_events
    WHERE occurred_at < now() - make_interval(days => $1)
    ORDER BY occurred_at
    LIMIT $2
);

-- name: order_exists
SELECT EXISTS (SELECT 1 FROM orders WHERE id = $1);

-- name: count_awaiting_payment_of_customers_by_email
SELECT count(*)
FROM orders
JOIN customers ON customers.id = orders.customer_id
WHERE customers.email LIKE $1 AND orders.status = 'pending' AND orders.payment_due_at IS NOT NULL;

-- name: payment_statuses_of_customers_by_email
SELECT coalesce(orders.payment_status, 'none') AS payment_status, count(*) AS orders
FROM orders
JOIN customers ON customers.id = orders.customer_id
WHERE customers.email LIKE $1
GROUP BY 1
ORDER BY 1;

-- Backfill ----------------------------------------------------------------------------------------

-- name: get_backfill
SELECT sink, since, after_id, orders_done, finished_at FROM backfills WHERE sink = $1;

-- name: start_backfill
INSERT INTO backfills (sink, since) VALUES ($1, $2)
ON CONFLICT (sink) DO UPDATE
    SET since = EXCLUDED.since, after_id = NULL, orders_done = 0, started_at = now(),
        updated_at = now(), finished_at = NULL;

-- name: advance_backfill
UPDATE backfills
SET after_id = $2, orders_done = orders_done + $3, updated_at = now()
WHERE sink = $1;

-- name: finish_backfill
UPDATE backfills SET finished_at = now(), updated_at = now() WHERE sink = $1;

-- name: orders_to_backfill
-- The next orders by id after $1, changed since $2 when given.
SELECT *
FROM orders
WHERE ($1::uuid IS NULL OR id > $1)
  AND ($2::timestamptz IS NULL OR updated_at >= $2)
ORDER BY id
LIMIT $3;

-- name: count_orders_to_backfill
SELECT count(*)
FROM orders
WHERE ($1::uuid IS NULL OR id > $1)
  AND ($2::timestamptz IS NULL OR updated_at >= $2);

-- name: customer_summaries
SELECT id, email, first_name, last_name FROM customers WHERE id = ANY($1::uuid[]);

-- Rewind ------------------------------------------------------------------------------------------

-- name: first_outbox_events_since
-- Per partition, the first event kept (in read order) that occurred at or after $1.
SELECT DISTINCT ON (partition) partition, txid, id
FROM outbox
WHERE occurred_at >= $1
ORDER BY partition, txid, id;

-- name: count_outbox_between
-- Per partition, the events after ($2, $3) up to and including ($4, $5).
SELECT bounds.partition, count(outbox.id) AS events
FROM unnest($1::smallint[], $2::xid8[], $3::bigint[], $4::xid8[], $5::bigint[])
    AS bounds (partition, from_txid, from_id, to_txid, to_id)
LEFT JOIN outbox
    ON outbox.partition = bounds.partition
   AND (outbox.txid, outbox.id) > (bounds.from_txid, bounds.from_id)
   AND (outbox.txid, outbox.id) <= (bounds.to_txid, bounds.to_id)
GROUP BY bounds.partition;

-- name: rewind_positions
-- Only backwards, and only while no relay holds the sink (checked under lock_sink_positions).
-- The moved partitions' expired leases go too: a relay that held one must claim it again, and
-- so reload its position, instead of renewing it and committing past the rewind.
UPDATE relay_positions AS positions
SET position_txid = moved.txid, position_id = moved.id, owner = NULL, lease_expires_at = NULL,
    updated_at = now()
FROM unnest($2::smallint[], $3::xid8[], $4::bigint[]) AS moved (partition, txid, id)
WHERE positions.sink = $1
  AND positions.partition = moved.partition
  AND (moved.txid, moved.id) < (positions.position_txid, positions.position_id);

-- name: directory_shard_of
SELECT shard FROM customer_directory WHERE customer_id = $1;

-- name: directory_record
-- The new customer's entry; none when the email is taken.
INSERT INTO customer_directory (customer_id, shard, email)
VALUES ($1, $2, $3)
ON CONFLICT (email) DO NOTHING
RETURNING customer_id;

-- name: directory_entry_by_email
SELECT customer_id, shard FROM customer_directory WHERE email = $1;

-- name: directory_forget
DELETE FROM customer_directory WHERE customer_id = $1;

-- name: directory_customers_per_shard
SELECT shard, count(*) AS customers FROM customer_directory GROUP BY shard;

-- name: directory_page
SELECT customer_id, shard
FROM customer_directory
WHERE $1::uuid IS NULL OR customer_id > $1
ORDER BY customer_id
LIMIT $2;

-- name: lock_products_to_reserve
-- In id order, so that concurrent reservations over the same products cannot deadlock.
SELECT id, sku, name, base_price, inventory_quantity, is_active
FROM products
WHERE id = ANY($1::uuid[])
ORDER BY id
FOR UPDATE;

-- name: products_by_id
SELECT id, sku, name, base_price, inventory_quantity, is_active
FROM products
WHERE id = ANY($1::uuid[]);

-- name: held_reservation_by_key
SELECT order_id, request_hash
FROM inventory_reservations
WHERE shard = $1 AND idempotency_key = $2 AND status = 'held'
FOR UPDATE;

-- name: insert_reservation
-- Takes the units of products already locked (lock_products_to_reserve) for order $1 and
-- records them, open for $8 seconds; nothing (no row) when another open reservation of shard
-- $2 holds the idempotency key $6.
WITH reserved AS (
    INSERT INTO inventory_reservations (
        order_id, shard, customer_id, product_ids, quantities, idempotency_key, request_hash,
        expires_at
    )
    VALUES ($1, $2, $3, $4, $5, $6, $7, now() + make_interval(secs => $8::float8))
    ON CONFLICT (shard, idempotency_key) WHERE status = 'held' AND idempotency_key IS NOT NULL
        DO NOTHING
    RETURNING order_id
),
taken AS (
    UPDATE products
    SET inventory_quantity = products.inventory_quantity - line.quantity, updated_at = now()
    FROM unnest($4::uuid[], $5::integer[]) AS line (id, quantity)
    WHERE products.id = line.id AND EXISTS (SELECT 1 FROM reserved)
)
SELECT order_id FROM reserved;

-- name: settle_reservation
-- Moves reservation $1 from one of the statuses $2 to $3 (a new version when $4: the change
-- has an event); no row when it is in none of them.
UPDATE inventory_reservations
SET status = $3, version = version + $4::boolean::integer, settled_at = now()
WHERE order_id = $1 AND status = ANY($2::text[])
RETURNING order_id, shard, customer_id, product_ids, quantities, version;

-- name: lock_products_in_order
SELECT id FROM products WHERE id = ANY($1::uuid[]) ORDER BY id FOR UPDATE;

-- name: restore_units
UPDATE products
SET inventory_quantity = products.inventory_quantity + line.quantity, updated_at = now()
FROM unnest($1::uuid[], $2::integer[]) AS line (id, quantity)
WHERE products.id = line.id;

-- name: reservation_products
SELECT product_ids FROM inventory_reservations WHERE order_id = $1;

-- name: reservation_status
SELECT status FROM inventory_reservations WHERE order_id = $1;

-- name: expired_reservations
-- Up to $2 held reservations of shard $1 past their expiry, oldest first.
SELECT order_id
FROM inventory_reservations
WHERE status = 'held' AND shard = $1 AND expires_at <= now()
ORDER BY expires_at
LIMIT $2;

-- name: shards_with_expired_reservations
SELECT DISTINCT shard FROM inventory_reservations WHERE status = 'held' AND expires_at <= now();

-- name: set_lock_timeout
-- For the rest of the transaction: a lock not granted within $1 fails the statement.
SELECT set_config('lock_timeout', $1, true);

-- name: decide_reservation
-- The decision on order $1's reservation: $2 when none was taken yet, else the one taken
-- (waiting for a transaction that is taking one). The no-op update returns the kept row.
INSERT INTO reservation_decisions (order_id, decision)
VALUES ($1, $2)
ON CONFLICT (order_id) DO UPDATE SET decision = reservation_decisions.decision
RETURNING decision;

-- name: retake_reservation
-- Commits again the released or returned reservation of order $1, whose products are locked
-- (lock_products_in_order) and hold its units; no row when it is in another status.
UPDATE inventory_reservations
SET status = 'committed', version = version + 1, settled_at = now()
WHERE order_id = $1 AND status IN ('released', 'returned')
RETURNING order_id, shard, customer_id, product_ids, quantities, version;

-- name: take_units
UPDATE products
SET inventory_quantity = products.inventory_quantity - line.quantity, updated_at = now()
FROM unnest($1::uuid[], $2::integer[]) AS line (id, quantity)
WHERE products.id = line.id;

-- name: reservation_lines
SELECT product_ids, quantities FROM inventory_reservations WHERE order_id = $1;

-- name: reservations_of_orders
SELECT order_id, status FROM inventory_reservations WHERE order_id = ANY($1::uuid[]);

-- name: committed_reservations_page
SELECT order_id AS id, shard
FROM inventory_reservations
WHERE status = 'committed' AND ($1::uuid IS NULL OR order_id > $1)
ORDER BY order_id
LIMIT $2;

-- name: live_orders_page
SELECT id, status
FROM orders
WHERE status <> 'cancelled' AND ($1::uuid IS NULL OR id > $1)
ORDER BY id
LIMIT $2;

-- name: lock_order_status
SELECT status, version FROM orders WHERE id = $1 FOR UPDATE;

-- name: customer_inputs
-- A new order's customer (null columns when it does not exist), its given addresses ($2) and
-- whose they are, and idempotency key ($3 scope, $4 key) while an earlier request keeps it.
SELECT customers.id AS customer_id, customers.email, customers.first_name, customers.last_name,
       customers.is_active AS customer_is_active,
       ARRAY(SELECT a.id FROM addresses AS a WHERE a.id = ANY($2::uuid[]) ORDER BY a.id)
           AS address_ids,
       ARRAY(SELECT a.customer_id FROM addresses AS a WHERE a.id = ANY($2::uuid[]) ORDER BY a.id)
           AS address_owners,
       kept.request_hash, kept.resource_id
FROM (VALUES ($1::uuid)) AS wanted (id)
LEFT JOIN customers ON customers.id = wanted.id
LEFT JOIN idempotency_keys AS kept
    ON kept.scope = $3 AND kept.key = $4::text AND kept.expires_at > now();

-- name: address_exists
SELECT EXISTS (SELECT 1 FROM addresses WHERE id = $1);

-- name: existing_orders
SELECT id, status FROM orders WHERE id = ANY($1::uuid[]);

-- name: queued_inventory_returns
SELECT order_id FROM inventory_returns ORDER BY queued_at LIMIT $1;

-- name: forget_inventory_returns
DELETE FROM inventory_returns WHERE order_id = ANY($1::uuid[]);

-- name: orders_report
-- Orders created in [$1, $2), grouped by $3 ('status', 'day' in UTC, or 'segment'), per
-- currency: how many, and their total amount.
SELECT CASE $3::text
           WHEN 'status' THEN status::text
           WHEN 'day' THEN to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD')
           ELSE coalesce(customer_segment, '')
       END AS bucket,
       currency,
       count(*) AS orders,
       sum(total_amount) AS revenue
FROM orders
WHERE created_at >= $1 AND created_at < $2
GROUP BY 1, 2
ORDER BY 1, 2;

-- name: shard_counts
SELECT (SELECT count(*) FROM customers) AS customers, (SELECT count(*) FROM orders) AS orders;
