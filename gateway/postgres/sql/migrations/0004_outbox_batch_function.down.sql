DROP FUNCTION outbox_batch(xid8, bigint, smallint[], integer);
