-- The liveness session of each relay: the backend serving the connection the relay keeps open
-- while it lives, and the run of the server holding it. A relay whose session is gone from
-- pg_stat_activity is dead (its process ended), and another relay releases its leases at
-- once instead of waiting for them to expire (gateway/relay/sessions.py). NULL: no session
-- recorded (yet), the lease is the only rule.
ALTER TABLE relay_instances
    ADD COLUMN backend_pid integer,
    ADD COLUMN backend_start timestamptz,
    ADD COLUMN server_started_at timestamptz;
