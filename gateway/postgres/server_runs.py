"""Which run of which PostgreSQL server a pool's connections reach, and how often that changed.

A pool opens a connection whenever it needs one; after a failover or a restart its new
connections reach another server, or the same one on a new run, and nothing else tells the
pool's users. :meth:`ServerRuns.observe` runs on every new connection of the pool (as its
``on_connect``), before the connection serves anything, so a query answered by a new server
always finds :attr:`ServerRuns.changes` already counting it. The relay reads its positions
again when it does: a standby promoted behind its primary may have lost the last commits, and
then gives their transaction ids to new events (:mod:`gateway.relay.pipeline`).
"""

from __future__ import annotations

from gateway.postgres.database import Connection
from gateway.postgres.queries import query


class ServerRuns:
    """The server run a pool reached last, and how many times it changed."""

    def __init__(self) -> None:
        self.current: str | None = None
        """``address:port@run start`` of the server the newest connection reached."""
        self.changes = 0
        """How many times a new connection reached another server run (the first counts)."""

    async def observe(self, connection: Connection) -> None:
        """Record the server run ``connection`` reached."""
        run = await connection.fetchval(query("server_run_identity"))
        if run != self.current:
            self.current = run
            self.changes += 1
