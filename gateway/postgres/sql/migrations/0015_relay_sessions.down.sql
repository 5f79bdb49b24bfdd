ALTER TABLE relay_instances
    DROP COLUMN server_started_at,
    DROP COLUMN backend_start,
    DROP COLUMN backend_pid;
