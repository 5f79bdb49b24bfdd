"""The relay's backlog and delivery counts, read over a connection of their own.

The load shares the gateway's pool; under overload hundreds of calls queue for it, and a
per-second reading taken from the same pool would wait behind them and skip seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Collection, Mapping
from typing import Self

import asyncpg

from gateway.configuration.settings import PostgresSettings
from gateway.postgres.database import connect
from gateway.postgres.outbox import backlog
from gateway.relay import tables


class RelayGauges:
    """Reads the backlog and delivered totals of the run's sinks from PostgreSQL.

    Only ``sinks`` are read: the outbox may also hold positions of sinks that other relays
    serve, or that no relay serves any more, whose backlog says nothing of this run.
    """

    def __init__(self, connection: asyncpg.Connection, sinks: Collection[str]) -> None:
        self._connection = connection
        self._sinks = frozenset(sinks)
        # The per-second sampler and the drain loop read at the same time.
        self._lock = asyncio.Lock()

    @classmethod
    @contextlib.asynccontextmanager
    async def connected(
        cls, settings: PostgresSettings, sinks: Collection[str]
    ) -> AsyncIterator[Self]:
        """Gauges of ``sinks`` over a connection of their own, closed on leaving."""
        connection = await connect(settings)
        try:
            yield cls(connection, sinks)
        finally:
            await connection.close()

    async def delivered(self) -> dict[str, int]:
        """Events each sink has had delivered, in total."""
        async with self._lock:
            totals = await tables.sink_totals(self._connection)
        return {t.sink: t.delivered for t in totals if t.sink in self._sinks}

    async def backlogs(self) -> dict[str, int]:
        """Events each sink has not had yet."""
        async with self._lock:
            backlogs = await backlog(self._connection)
        return {b.sink: b.events for b in backlogs if b.sink in self._sinks}

    async def served(self) -> dict[str, bool]:
        """Whether a live relay holds a lease on each sink (sinks without positions, which no
        relay has ever started for, are left out)."""
        async with self._lock:
            totals = await tables.sink_totals(self._connection)
        return {t.sink: t.served for t in totals if t.sink in self._sinks}


UNSERVED_GRACE_SECONDS = 5.0
"""How long the drain waits for a relay to serve a sink before saying none does."""


def unserved_sinks(last_served: Mapping[str, float], now: float) -> list[str]:
    """The sinks no relay has served (no live lease, or never started for) for
    ``UNSERVED_GRACE_SECONDS`` up to ``now``, given when each was last seen served (or the
    drain began): their backlog would never drain."""
    return sorted(s for s, seen in last_served.items() if now - seen >= UNSERVED_GRACE_SECONDS)
