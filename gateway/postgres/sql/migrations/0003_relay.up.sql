-- Relay state: per sink and outbox partition, the position delivered up to, and the lease of
-- the relay process working on it; the live relay processes; and the dead letters.

-- An event (txid, id) of partition p is delivered to sink s once
-- (txid, id) <= (position_txid, position_id) of row (s, p).
CREATE TABLE relay_positions (
    sink             varchar(100) NOT NULL,
    partition        smallint NOT NULL,
    position_txid    xid8 NOT NULL,
    position_id      bigint NOT NULL,
    owner            varchar(200),
    lease_expires_at timestamptz,
    delivered_total  bigint NOT NULL DEFAULT 0,
    retrying         integer NOT NULL DEFAULT 0,
    last_error       text,
    updated_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (sink, partition),
    CONSTRAINT relay_positions_partition_range CHECK (partition BETWEEN 0 AND 15)
);

CREATE TABLE relay_instances (
    id           varchar(200) PRIMARY KEY,
    hostname     varchar(255) NOT NULL,
    pid          integer NOT NULL,
    started_at   timestamptz NOT NULL DEFAULT now(),
    heartbeat_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE dead_letters (
    id                  bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    sink                varchar(100) NOT NULL,
    outbox_id           bigint NOT NULL,
    event_id            uuid NOT NULL,
    aggregate_type      varchar(100) NOT NULL,
    aggregate_id        varchar(200) NOT NULL,
    version             integer NOT NULL,
    event_type          varchar(100) NOT NULL,
    payload             jsonb NOT NULL,
    headers             jsonb NOT NULL,
    occurred_at         timestamptz NOT NULL,
    reason              varchar(50) NOT NULL,
    last_error          text NOT NULL,
    attempts            integer NOT NULL,
    dead_at             timestamptz NOT NULL DEFAULT now(),
    replay_requested_at timestamptz,
    replay_claimed_by   varchar(200),
    replay_claimed_until timestamptz,
    replayed_at         timestamptz,
    CONSTRAINT dead_letters_reason CHECK (reason IN ('permanent', 'attempts_exhausted')),
    CONSTRAINT dead_letters_one_per_sink UNIQUE (sink, event_id)
);

CREATE INDEX dead_letters_unresolved ON dead_letters (sink, id) WHERE replayed_at IS NULL;
CREATE INDEX dead_letters_replay_requested ON dead_letters (sink, id)
    WHERE replay_requested_at IS NOT NULL AND replayed_at IS NULL;

