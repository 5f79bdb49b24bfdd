-- An open reservation holds its request's idempotency key within its shard only: keys are kept
-- per shard (each shard's idempotency_keys), so the same key used by customers on two shards is
-- two requests. The sweeper settles expired reservations shard by shard.

DROP INDEX inventory_reservations_held_key;

CREATE UNIQUE INDEX inventory_reservations_held_key
    ON inventory_reservations (shard, idempotency_key)
    WHERE status = 'held' AND idempotency_key IS NOT NULL;

CREATE INDEX inventory_reservations_held_shard_expiry
    ON inventory_reservations (shard, expires_at) WHERE status = 'held';
