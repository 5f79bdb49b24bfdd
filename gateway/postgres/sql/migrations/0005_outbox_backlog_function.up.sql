-- Each sink's backlog: events past its position in their partition, and the oldest one's age.
-- The count walks the (txid, id) index from the sink's lowest position, in a statement planned
-- with that position's value (EXECUTE): a single query joining positions to the outbox is
-- planned with a generic estimate and scans the whole outbox, which keeps every delivered
-- event for the retention period, on every call.
CREATE FUNCTION outbox_backlog()
RETURNS TABLE (sink text, backlog bigint, oldest_age_seconds float8)
LANGUAGE plpgsql STABLE
AS $$
DECLARE
    lowest record;
BEGIN
    FOR lowest IN
        SELECT DISTINCT ON (positions.sink)
               positions.sink, positions.position_txid, positions.position_id
        FROM relay_positions AS positions
        ORDER BY positions.sink, positions.position_txid, positions.position_id
    LOOP
        RETURN QUERY EXECUTE format(
            'SELECT %1$L::text, count(*),'
            '       extract(epoch FROM now() - min(outbox.occurred_at))::float8'
            ' FROM outbox'
            ' JOIN relay_positions AS own'
            '   ON own.sink = %1$L AND own.partition = outbox.partition'
            ' WHERE (outbox.txid, outbox.id) > (%2$L::xid8, %3$L::bigint)'
            '   AND (outbox.txid, outbox.id) > (own.position_txid, own.position_id)',
            lowest.sink, lowest.position_txid, lowest.position_id
        );
    END LOOP;
END
$$;
