"""Which run of PostgreSQL a pool's connections reach, and how often that changed.

A pool opens a connection whenever it needs one; after a failover or a restart its new
connections reach another server, or the same one on a new run, and nothing else tells the
pool's users. :meth:`ServerRuns.observe` runs on every new connection of the pool (as its
``on_connect``), before the connection serves anything, so a query answered by a new server
always finds :attr:`ServerRuns.changes` already counting it; on a change it expires the pool's
other connections, so that no query begun after it reaches the previous server. The relay
reads its positions again when the run changes, and commits a batch only on the run it read
it from: a standby promoted behind its primary may have lost the last commits, and then gives
their transaction ids to new events (:mod:`gateway.relay.pipeline`).

A run is the time the server's postmaster started (the ``server_start`` fragment of
``relay.sql``): two servers never share one, and an operator cannot move it. A crash restart
that keeps the postmaster keeps the run; it loses no event's commit (those are flushed), only
relay commits made without waiting for the flush, which the commit's check of where a
position stands catches.
"""

from __future__ import annotations

import datetime
from collections.abc import Awaitable, Callable

from gateway.postgres.database import Connection
from gateway.postgres.queries import query


class ServerRuns:
    """The server runs a pool reached, numbered by change."""

    def __init__(self) -> None:
        self.changes = 0
        """How many times a new connection reached another server run (the first counts)."""
        self.on_change: Callable[[], Awaitable[None]] | None = None
        """Called on each change after the first (the relay expires the pool's connections)."""
        self.current: datetime.datetime | None = None
        """The run the newest connection reached."""

    def run(self, change: int) -> datetime.datetime | None:
        """The run reached at change number ``change``, if it is the current one (only the
        current run is ever asked for: a batch read at an earlier one is not committed)."""
        return self.current if change == self.changes else None

    async def observe(self, connection: Connection) -> None:
        """Record the server run ``connection`` reached."""
        run = await connection.fetchval(query("current_server_run"))
        if run == self.current:
            return
        self.changes += 1
        self.current = run
        if self.changes > 1 and self.on_change is not None:
            await self.on_change()
