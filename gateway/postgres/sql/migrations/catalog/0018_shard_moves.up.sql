-- Moves of customers between shards (fanout shards move): one row per move, from its start to
-- its outcome. The source shard's commit of the move (its tombstones) decides whether a move
-- that did not finish rolls forward or back; this row says which moves are unfinished.

CREATE TABLE shard_moves (
    id          uuid PRIMARY KEY,
    customer_id uuid NOT NULL,
    source      text NOT NULL,
    target      text NOT NULL,
    -- started: recorded, no copy committed; fenced: the source committed the move (its commit
    -- point); done: the target holds the copy and the catalog follows; rolled_back: the
    -- customer stays on the source, nothing left on the target.
    state       text NOT NULL DEFAULT 'started',
    started_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    last_error  text,
    CONSTRAINT shard_moves_state
        CHECK (state IN ('started', 'fenced', 'done', 'rolled_back')),
    CONSTRAINT shard_moves_elsewhere CHECK (source <> target)
);

-- At most one unfinished move per customer.
CREATE UNIQUE INDEX shard_moves_one_open
    ON shard_moves (customer_id) WHERE state NOT IN ('done', 'rolled_back');

CREATE INDEX shard_moves_started_at ON shard_moves (started_at);
