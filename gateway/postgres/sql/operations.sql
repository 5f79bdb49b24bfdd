-- Operations (gateway/operations/): verify, doctor, demo data, backfill and rewind. Backfill's
-- and rewind's reads and moves run in the modules that own their tables
-- (gateway/write_path/orders.py, gateway/postgres/outbox.py, gateway/relay/tables.py).
-- Each query starts with a "-- name:" line and runs to the next one. gateway/postgres/queries.py
-- loads every .sql file of this folder; a name is defined in one file only.

-- Verification --------------------------------------------------------------------------------

-- name: orders_for_verification
SELECT id::text AS id, version, status::text AS status, total_amount::text AS total,
       created_at, updated_at
FROM orders
ORDER BY updated_at, id;

-- name: orders_for_verification_by_id
SELECT id::text AS id, version, status::text AS status, total_amount::text AS total,
       created_at, updated_at
FROM orders
WHERE id = ANY($1::uuid[]);

-- name: count_known_orders
SELECT count(*) FROM orders WHERE id = ANY($1::uuid[]);

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

-- Doctor: PostgreSQL health -------------------------------------------------------------------

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

-- Demo data -----------------------------------------------------------------------------------

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

-- Backfill ------------------------------------------------------------------------------------

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

-- Rewind --------------------------------------------------------------------------------------

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
