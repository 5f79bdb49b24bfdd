DROP INDEX IF EXISTS inventory_reservations_held_shard_expiry;
DROP INDEX IF EXISTS inventory_reservations_held_key;

CREATE UNIQUE INDEX inventory_reservations_held_key
    ON inventory_reservations (idempotency_key)
    WHERE status = 'held' AND idempotency_key IS NOT NULL;
