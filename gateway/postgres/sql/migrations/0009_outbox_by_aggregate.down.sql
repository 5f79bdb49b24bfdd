DROP INDEX IF EXISTS outbox_aggregate_version;
