"""The console's open sessions, kept in PostgreSQL: a login records one, logging out deletes
it, and a session cookie counts only while its record is there, so that every worker of
``fanout serve`` sees a logout at once. Expired records are deleted at each login."""

from __future__ import annotations

import asyncio

import asyncpg

from gateway.postgres.queries import query


async def open_session(
    pool: asyncpg.Pool, session_id: str, max_age_seconds: int, timeout_seconds: float
) -> None:
    """Record session ``session_id`` for ``max_age_seconds``."""
    async with (
        asyncio.timeout(timeout_seconds),
        pool.acquire() as connection,
        connection.transaction(),
    ):
        await connection.execute(query("console_prune_sessions"))
        await connection.execute(query("console_open_session"), session_id, float(max_age_seconds))


async def session_open(pool: asyncpg.Pool, session_id: str, timeout_seconds: float) -> bool:
    """Whether session ``session_id`` is recorded and unexpired."""
    async with asyncio.timeout(timeout_seconds):
        found: bool = await pool.fetchval(query("console_session_open"), session_id)
    return found


async def close_session(pool: asyncpg.Pool, session_id: str, timeout_seconds: float) -> None:
    """End session ``session_id`` (nothing happens if it is not recorded)."""
    async with asyncio.timeout(timeout_seconds):
        await pool.execute(query("console_close_session"), session_id)
