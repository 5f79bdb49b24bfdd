DROP TABLE idempotency_keys;
DROP TABLE outbox;
DROP FUNCTION fanout_notify_outbox();
