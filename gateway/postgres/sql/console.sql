-- The operator console (gateway/api/console/): what it reads that no other module does.
-- Each query starts with a "-- name:" line and runs to the next one. gateway/postgres/queries.py
-- loads every .sql file of this folder; a name is defined in one file only.

-- name: console_order_id_by_number
SELECT id FROM orders WHERE order_number = $1;

-- name: console_order
-- What fanout verify compares (orders_for_verification_by_id), with the order's number.
SELECT id::text AS id, order_number, version, status::text AS status,
       total_amount::text AS total, created_at, updated_at
FROM orders
WHERE id = $1;

-- name: console_relay_instances
-- Every relay that has sent a heartbeat, with its age in seconds.
SELECT id, hostname, pid, started_at, stalled_sinks,
       extract(epoch FROM now() - heartbeat_at)::float8 AS heartbeat_age_seconds
FROM relay_instances
ORDER BY id;

-- name: console_leases
-- Per sink and owner: the partitions a live lease covers, and when the first of them expires.
SELECT sink, owner, count(*) AS partitions,
       extract(epoch FROM min(lease_expires_at) - now())::float8 AS expires_in_seconds
FROM relay_positions
WHERE owner IS NOT NULL AND lease_expires_at >= now()
GROUP BY sink, owner
ORDER BY sink, owner;

-- name: console_unleased_partitions
-- Per sink: the partitions no live lease covers.
SELECT sink, count(*) FILTER (WHERE owner IS NULL OR lease_expires_at < now()) AS unleased,
       count(*) AS partitions
FROM relay_positions
GROUP BY sink
ORDER BY sink;

-- name: console_open_session
-- A login: its session lasts $2 seconds unless logging out ends it first.
INSERT INTO console_sessions (id, expires_at) VALUES ($1, now() + make_interval(secs => $2));

-- name: console_prune_sessions
DELETE FROM console_sessions WHERE expires_at <= now();

-- name: console_session_open
SELECT EXISTS (SELECT 1 FROM console_sessions WHERE id = $1 AND expires_at > now());

-- name: console_close_session
DELETE FROM console_sessions WHERE id = $1;
