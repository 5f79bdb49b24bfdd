-- Whether a partition has a committed event past a position, readable now or not yet (held back
-- below an older transaction still running): what a relay run until idle waits for. Like
-- outbox_batch (migration 0004), planned to walk the (txid, id) index from the position, which
-- the planner may not choose by itself when the outbox has grown since it was last analysed.
CREATE FUNCTION outbox_pending(after_txid xid8, after_id bigint, partition_number smallint)
RETURNS boolean
LANGUAGE sql STABLE
SET enable_sort = off
SET enable_bitmapscan = off
SET enable_seqscan = off
AS $$
    SELECT EXISTS (
        SELECT 1
        FROM outbox
        WHERE (txid, id) > (after_txid, after_id)
          AND partition = partition_number
        ORDER BY txid, id
        LIMIT 1
    )
$$;
