-- The relay: reading and pruning the outbox (gateway/postgres/outbox.py), and the relay's
-- positions, leases, instances, dead letters and replays (gateway/relay/tables.py).
-- Each query starts with a "-- name:" line and runs to the next one. gateway/postgres/queries.py
-- loads every .sql file of this folder; a name is defined in one file only.

-- Reading and pruning the outbox --------------------------------------------------------------

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

-- Positions, leases, instances ----------------------------------------------------------------

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

-- fragment: server_run
-- When this run of the server began: its start, or its last restart after a crash (a backend
-- killed, say by the OOM killer, ends every session but keeps pg_postmaster_start_time();
-- the statistics it discards mark the moment). A session of an earlier run was ended by the
-- server, not by its relay's death.
greatest(pg_postmaster_start_time(), (SELECT stats_reset FROM pg_stat_bgwriter))

-- fragment: server_start
-- When the server's postmaster started: another after a failover or a restart, never moved by
-- an operator (unlike the statistics' reset, which server_run also follows).
pg_postmaster_start_time()

-- name: current_server_run
-- The run of the server a connection reached (gateway/postgres/server_runs.py).
SELECT
    -- include: server_start
;

-- name: record_relay_session
-- Run on the relay's liveness connection: records the session running it as relay $1's
-- (gateway/relay/sessions.py), creating the row if no heartbeat did yet.
INSERT INTO relay_instances (id, hostname, pid, backend_pid, backend_start, server_started_at)
SELECT $1, $2, $3, sessions.pid, sessions.backend_start,
       -- include: server_run
FROM pg_stat_activity AS sessions
WHERE sessions.pid = pg_backend_pid()
ON CONFLICT (id) DO UPDATE
    SET backend_pid = EXCLUDED.backend_pid,
        backend_start = EXCLUDED.backend_start,
        server_started_at = EXCLUDED.server_started_at,
        heartbeat_at = now();

-- name: reap_dead_relays
-- Run on relay $1's liveness connection, every relay.session_check_interval_seconds: deletes
-- the relays whose recorded session ended on this run of the server (sessions.session_ended:
-- a pid gone, or reused by a session started at another time; a start the server hides is not
-- judged) and releases their leases, in one statement. Returns them; the relays with a
-- heartbeat within $2 seconds, but them; and whether $1's row still records this session.
WITH dead AS (
    DELETE FROM relay_instances AS instances
    WHERE instances.id <> $1
      AND instances.backend_pid IS NOT NULL
      AND instances.server_started_at = (
          -- include: server_run
      )
      AND NOT EXISTS (
          SELECT 1
          FROM pg_stat_activity AS sessions
          WHERE sessions.pid = instances.backend_pid
            AND (sessions.backend_start IS NULL
                 OR sessions.backend_start = instances.backend_start)
      )
    RETURNING instances.id
), released AS (
    UPDATE relay_positions
    SET owner = NULL, lease_expires_at = NULL, retrying = 0
    WHERE owner IN (SELECT id FROM dead)
)
SELECT
    ARRAY(SELECT id FROM dead ORDER BY id)::text[] AS reaped,
    ARRAY(
        SELECT id FROM relay_instances
        WHERE heartbeat_at >= now() - make_interval(secs => $2)
          AND id NOT IN (SELECT id FROM dead)
        ORDER BY id
    )::text[] AS live,
    EXISTS (
        SELECT 1 FROM relay_instances
        WHERE id = $1
          AND backend_pid = pg_backend_pid()
          AND server_started_at = (
              -- include: server_run
          )
    ) AS recorded;

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
-- Fenced: only the lease owner moves a position, only forwards, only from where the owner
-- read it ($7, $8; NULL: from wherever it stands), and only on the server run the batch was
-- read from ($9; NULL: any). A position found elsewhere, or another run, means the owner read
-- from a server that has since failed over, losing the last commits: the new primary may
-- give their transaction ids to new events, which the move would pass over.
UPDATE relay_positions AS positions
SET position_txid = moved.txid,
    position_id = moved.id,
    delivered_total = positions.delivered_total + moved.delivered,
    retrying = 0,
    last_error = NULL,
    updated_at = now()
FROM unnest($2::smallint[], $3::xid8[], $4::bigint[], $5::bigint[], $7::xid8[], $8::bigint[])
    AS moved (partition, txid, id, delivered, since_txid, since_id)
WHERE positions.sink = $1
  AND positions.partition = moved.partition
  AND positions.owner = $6
  AND (positions.position_txid, positions.position_id) < (moved.txid, moved.id)
  AND (moved.since_txid IS NULL
       OR (positions.position_txid, positions.position_id) = (moved.since_txid, moved.since_id))
  AND ($9::timestamptz IS NULL OR $9 = (
      -- include: server_start
  ))
RETURNING positions.partition;

-- name: on_server_run
-- Whether this is the server run $1 (a batch's commit without a position to move checks it).
SELECT $1::timestamptz = (
    -- include: server_start
) AS same;

-- name: record_retrying
-- Each partition counts the events of its own that wait for a retry, so the sum over the
-- partitions counts each event once.
UPDATE relay_positions AS positions
SET retrying = counted.retrying,
    last_error = CASE WHEN counted.retrying > 0 THEN $4 ELSE positions.last_error END,
    updated_at = now()
FROM unnest($2::smallint[], $3::integer[]) AS counted (partition, retrying)
WHERE positions.sink = $1 AND positions.owner = $5 AND positions.partition = counted.partition;

-- Dead letters and replays --------------------------------------------------------------------

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
-- Each letter by its id and its event's ($1[i], $2[i]), while relay $3 claims it: after a
-- failover that lost the last commits, an id may have been given again to another letter
-- (of this event for another sink, say), and the claim is gone.
UPDATE dead_letters AS letters
SET replayed_at = now(), replay_claimed_by = NULL, replay_claimed_until = NULL
FROM unnest($1::bigint[], $2::uuid[]) AS done (id, event_id)
WHERE letters.id = done.id AND letters.event_id = done.event_id
  AND letters.replay_claimed_by = $3;

-- name: replay_failed
-- Each letter by its id and its event's, while relay $5 claims it, as mark_replayed.
UPDATE dead_letters AS letters
SET last_error = failed.error,
    attempts = letters.attempts + 1,
    replay_claimed_by = NULL,
    replay_claimed_until = NULL,
    replay_requested_at = CASE WHEN failed.keep_requested THEN letters.replay_requested_at END
FROM unnest($1::bigint[], $2::uuid[], $3::text[], $4::boolean[])
    AS failed (id, event_id, error, keep_requested)
WHERE letters.id = failed.id AND letters.event_id = failed.event_id
  AND letters.replay_claimed_by = $5;

-- Sinks: totals, removal, pending work --------------------------------------------------------

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
-- Whether any partition of the sink has a committed event past its position, or a replay waits.
-- An event an older transaction still running holds back (outbox_batch reads below the oldest)
-- counts too: a relay run until idle waits for it rather than stopping with it undelivered.
-- outbox_pending (migration 0017) walks the (txid, id) index from each position.
SELECT EXISTS (
    SELECT 1
    FROM relay_positions AS positions
    WHERE positions.sink = $1
      AND outbox_pending(positions.position_txid, positions.position_id, positions.partition)
) OR EXISTS (
    SELECT 1 FROM dead_letters
    WHERE sink = $1 AND replay_requested_at IS NOT NULL AND replayed_at IS NULL
);
