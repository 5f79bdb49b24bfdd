-- The schema's and PostgreSQL's own queries: the migration runner
-- (gateway/postgres/migrations.py), database creation (gateway/postgres/database.py), and the
-- advisory locks that migrations, the relay's storage and upkeep, and the saga's storage take.
-- Each query starts with a "-- name:" line and runs to the next one. gateway/postgres/queries.py
-- loads every .sql file of this folder; a name is defined in one file only.

-- Advisory locks ------------------------------------------------------------------------------

-- name: acquire_advisory_lock
SELECT pg_advisory_lock($1);

-- name: release_advisory_lock
SELECT pg_advisory_unlock($1);

-- name: try_advisory_xact_lock
SELECT pg_try_advisory_xact_lock($1);

-- Migration history ---------------------------------------------------------------------------

-- name: create_migration_history
CREATE TABLE IF NOT EXISTS fanout_schema_migrations (
    version    integer PRIMARY KEY,
    name       text NOT NULL,
    checksum   char(64) NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
);

-- name: list_applied_migrations
SELECT version, name, checksum, applied_at FROM fanout_schema_migrations ORDER BY version;

-- name: record_migration
INSERT INTO fanout_schema_migrations (version, name, checksum) VALUES ($1, $2, $3);

-- name: forget_migration
DELETE FROM fanout_schema_migrations WHERE version = $1;

-- Databases -----------------------------------------------------------------------------------

-- name: database_exists
SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1);
