"""PostgreSQL: connections, named queries, migrations, advisory locks, and the outbox table."""
