-- Streaming replicas (gateway/postgres/replicas.py; the doctor reads primary_replication too).
-- Each query starts with a "-- name:" line and runs to the next one. gateway/postgres/queries.py
-- loads every .sql file of this folder; a name is defined in one file only.

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

-- name: primary_identity
-- Which server this connection reached, and its timeline (the first eight hexadecimal digits
-- of its current WAL file's name): each promotion of a standby starts a new one.
SELECT inet_server_addr()::text AS address,
       inet_server_port() AS port,
       pg_is_in_recovery() AS in_recovery,
       ('x' || substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8))::bit(32)::integer AS timeline;

-- name: last_promotion
-- When the newest timeline began: its history file is written when a standby is promoted
-- (pg_ls_waldir needs the pg_monitor role; without it, the time is not known).
SELECT max(modification) AS promoted_at
FROM pg_ls_waldir()
WHERE name ~ '^[0-9A-F]{8}\.history$';

-- name: assign_transaction_id
-- Gives the running transaction an id, so that its commit writes WAL: under synchronous
-- replication that commit returns only once a synchronous standby has all WAL before it.
SELECT pg_current_xact_id()::text;
