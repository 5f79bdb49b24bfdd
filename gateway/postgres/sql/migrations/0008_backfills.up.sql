-- Where each sink's backfill (fanout backfill) stands, so that one interrupted resumes after
-- the last batch it wrote instead of starting again.
CREATE TABLE backfills (
    sink        varchar(100) PRIMARY KEY,
    since       timestamptz,
    after_id    uuid,
    orders_done bigint NOT NULL DEFAULT 0,
    started_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    finished_at timestamptz
);
