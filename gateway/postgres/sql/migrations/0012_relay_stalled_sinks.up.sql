-- The sinks whose worker in a relay has stalled (a call into the sink outlived its timeout by
-- a lease's life): the relay no longer renews its leases on them, and the other relays share
-- those sinks' partitions without it.
ALTER TABLE relay_instances ADD COLUMN stalled_sinks varchar(100)[] NOT NULL DEFAULT '{}';
