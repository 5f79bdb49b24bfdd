"""The relay's backlog and delivery counts, read over a connection of their own.

The load shares the gateway's pool; under overload hundreds of calls queue for it, and a
per-second reading taken from the same pool would wait behind them and skip seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Self

import asyncpg

from gateway import relay_state
from gateway.config import PostgresSettings
from gateway.database import connect
from gateway.outbox import backlog


class RelayGauges:
    """Reads per-sink backlog and delivered totals from PostgreSQL."""

    def __init__(self, connection: asyncpg.Connection) -> None:
        self._connection = connection
        # The per-second sampler and the drain loop read at the same time.
        self._lock = asyncio.Lock()

    @classmethod
    @contextlib.asynccontextmanager
    async def connected(cls, settings: PostgresSettings) -> AsyncIterator[Self]:
        """Gauges over a connection of their own, closed on leaving."""
        connection = await connect(settings)
        try:
            yield cls(connection)
        finally:
            await connection.close()

    async def delivered(self) -> dict[str, int]:
        """Events each sink has had delivered, in total."""
        async with self._lock:
            totals = await relay_state.sink_totals(self._connection)
        return {t.sink: t.delivered for t in totals}

    async def backlogs(self) -> dict[str, int]:
        """Events each sink has not had yet."""
        async with self._lock:
            backlogs = await backlog(self._connection)
        return {b.sink: b.events for b in backlogs}
