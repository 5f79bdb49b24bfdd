ALTER TABLE relay_instances DROP COLUMN stalled_sinks;
