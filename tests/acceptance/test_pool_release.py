"""What a pooled connection keeps when it goes back to the pool, on the real server."""

from __future__ import annotations

from gateway.configuration.settings import PostgresSettings
from gateway.postgres.database import create_pool


async def test_a_released_connection_keeps_its_session_but_never_a_transaction(
    migrated_url: str,
) -> None:
    pool = await create_pool(PostgresSettings(url=migrated_url, pool_min_size=1, pool_max_size=1))
    try:
        async with pool.acquire() as connection:
            await connection.execute("SET application_name = 'kept-by-the-pool'")
            pid = await connection.fetchval("SELECT pg_backend_pid()")
            transaction = connection.transaction()
            await transaction.start()
            await connection.execute("CREATE TEMPORARY TABLE left_open (id int)")
        async with pool.acquire() as connection:
            assert await connection.fetchval("SELECT pg_backend_pid()") == pid
            # No RESET ALL on release (a round trip per request saved) ...
            assert await connection.fetchval("SHOW application_name") == "kept-by-the-pool"
            # ... but a transaction left open is always rolled back.
            assert not connection.is_in_transaction()
            assert await connection.fetchval("SELECT to_regclass('pg_temp.left_open')") is None
    finally:
        await pool.close()
