-- An aggregate's events by version, for sinks that publish a log (Kafka): before a batch goes
-- out, the relay looks up each aggregate's earlier versions that lie past the batch (a
-- transaction can take its id before an earlier version's and commit after it), so that they
-- are published first.
CREATE INDEX outbox_aggregate_version ON outbox (aggregate_id, version);
