-- The transactional outbox and the idempotency keys of the write path.

CREATE TABLE outbox (
    id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    event_id       uuid NOT NULL UNIQUE,
    -- The writing transaction's id: the relay reads only below the oldest transaction still
    -- running, so an event whose transaction commits late is never skipped.
    txid           xid8 NOT NULL DEFAULT pg_current_xact_id(),
    aggregate_type varchar(100) NOT NULL,
    aggregate_id   varchar(200) NOT NULL,
    version        integer NOT NULL,
    event_type     varchar(100) NOT NULL,
    payload        jsonb NOT NULL,
    headers        jsonb NOT NULL DEFAULT '{}',
    occurred_at    timestamptz NOT NULL DEFAULT now(),
    -- Events of one aggregate always share a partition; relays split the work by partition.
    partition      smallint GENERATED ALWAYS AS ((hashtext(aggregate_id) & 2147483647) % 16) STORED,
    CONSTRAINT outbox_version_positive CHECK (version >= 1)
);

-- Relays read in (txid, id) order, keeping the partitions they own.
CREATE INDEX outbox_position ON outbox (txid, id);

-- Wakes relays listening on the channel. PostgreSQL delivers a notification only when the
-- inserting transaction commits, and folds repeats within one transaction into one; a trigger
-- (rather than a NOTIFY sent by the client) also wakes relays for rows written by other tools.
CREATE FUNCTION fanout_notify_outbox() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify(TG_ARGV[0], '');
    RETURN NULL;
END
$$;

CREATE TRIGGER outbox_notify AFTER INSERT ON outbox
    FOR EACH STATEMENT EXECUTE FUNCTION fanout_notify_outbox('fanout_outbox');

CREATE TABLE idempotency_keys (
    scope        varchar(50) NOT NULL,
    key          varchar(255) NOT NULL,
    request_hash char(64) NOT NULL,
    resource_id  uuid NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    expires_at   timestamptz NOT NULL,
    PRIMARY KEY (scope, key)
);

CREATE INDEX idempotency_keys_expires_at ON idempotency_keys (expires_at);
