DROP FUNCTION outbox_pending(xid8, bigint, smallint);
