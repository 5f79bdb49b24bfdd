"""The errors that mean PostgreSQL is unreachable for now: the relay waits and tries again."""

from __future__ import annotations

import asyncpg

DATABASE_ERRORS = (
    OSError,
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    # asyncpg's protocol can be left mid-operation when the server drops a session.
    asyncpg.InternalClientError,
    TimeoutError,
)
