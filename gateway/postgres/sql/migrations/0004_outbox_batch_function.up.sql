-- The relay's batch read as a function with planner settings of its own. Read in position
-- order with a LIMIT, it must walk the (txid, id) index and stop after the batch. With stale
-- statistics (a fresh table, or a backlog grown since the last ANALYZE) the planner instead
-- collects every event past the position and sorts them, so each batch would cost time in
-- proportion to the whole backlog.
CREATE FUNCTION outbox_batch(after_txid xid8, after_id bigint, partitions smallint[], batch_limit integer)
RETURNS SETOF outbox
LANGUAGE sql STABLE
SET enable_sort = off
SET enable_bitmapscan = off
SET enable_seqscan = off
AS $$
    SELECT *
    FROM outbox
    WHERE (txid, id) > (after_txid, after_id)
      AND txid < pg_snapshot_xmin(pg_current_snapshot())
      AND partition = ANY (partitions)
    ORDER BY txid, id
    LIMIT batch_limit
$$;
