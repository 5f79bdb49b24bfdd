"""Everything the relay reads and writes in PostgreSQL, as one interface.

The relay's parts reach their tables only through :class:`RelayStorage`.
:class:`PostgresRelayStorage` implements it over a pool with the SQL of
:mod:`gateway.relay.tables` and :mod:`gateway.postgres.outbox`; the unit tests implement it
in memory, so that every rule of the relay can be checked without a server.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping, Sequence
from typing import Protocol, Self

import asyncpg
from asyncpg.pool import PoolConnectionProxy

from gateway.postgres import outbox
from gateway.postgres.advisory_locks import AdvisoryLock
from gateway.postgres.outbox import Backlog, StoredEvent
from gateway.postgres.queries import query
from gateway.postgres.server_runs import ServerRuns
from gateway.relay import tables
from gateway.relay.sessions import RelaySession, SessionCheck
from gateway.relay.tables import DeadLetter, Move, Position, Replay, SinkTotals


class RelayStorage(Protocol):
    """The outbox as the relay reads it, and the relay's own tables."""

    async def read_batch(
        self, after: Position, partitions: Sequence[int], limit: int
    ) -> list[StoredEvent]:
        """Up to ``limit`` committed events of ``partitions`` after ``after``, in order."""
        ...

    async def read_earlier_versions(
        self, below: Mapping[str, int], after: Position
    ) -> list[StoredEvent]:
        """Committed events of the aggregates in ``below`` below the version given there,
        past ``after``, in order (for sinks that publish each aggregate in version order)."""
        ...

    async def has_work(self, sink: str) -> bool:
        """Whether ``sink`` has an undelivered committed event (readable now, or once the older
        transactions still running end), or a requested replay."""
        ...

    async def register_sink(self, sink: str, *, from_beginning: bool) -> None:
        """Give ``sink`` positions if it has none: before every event, or at "now"."""
        ...

    async def positions(self, sink: str, partitions: Sequence[int]) -> dict[int, Position]:
        """Where ``sink`` stands in each of ``partitions``."""
        ...

    async def renew_leases(self, sink: str, owner: str, ttl_seconds: float) -> set[int]:
        """Extend ``owner``'s leases on ``sink``; the partitions it still holds."""
        ...

    async def claim_leases(
        self, sink: str, owner: str, partitions: Sequence[int], ttl_seconds: float
    ) -> set[int]:
        """Take those of ``partitions`` that no live lease covers; the partitions taken."""
        ...

    async def release_leases(self, sink: str, owner: str, partitions: Sequence[int]) -> None:
        """Give up ``owner``'s leases on ``partitions``."""
        ...

    def server_changes(self) -> int:
        """How many times the server answering changed (a failover, a restart; the first
        connection counts), as far as this storage can tell; it counts a change before any
        query the new server answers."""
        ...

    async def commit_batch(
        self,
        sink: str,
        owner: str,
        moves: Mapping[int, Move],
        dead: Sequence[DeadLetter],
        *,
        server: int | None = None,
    ) -> bool:
        """Dead letters and position moves in one transaction; False (nothing written) if
        ``owner`` no longer holds a lease it moves, a position stands elsewhere than the
        move's ``since``, or the server changed since change number ``server`` (that of the
        batch's read; None: not checked)."""
        ...

    async def record_retrying(
        self, sink: str, owner: str, retrying: Mapping[int, int], error: str | None
    ) -> None:
        """How many events of each of ``owner``'s partitions wait for a retry."""
        ...

    async def claim_replays(
        self, sink: str, owner: str, limit: int, ttl_seconds: float
    ) -> list[Replay]:
        """Claim up to ``limit`` dead letters whose replay was requested."""
        ...

    async def finish_replays(
        self,
        owner: str,
        delivered: Sequence[Replay],
        failed: Sequence[tuple[Replay, str, bool]],
    ) -> None:
        """Mark replays ``owner`` claimed delivered, or record their failure (``True``: try
        again later). A dead letter is found by its id and its event's, and only while
        ``owner``'s claim on it stands: after a failover that lost the last commits, its id
        may name another letter, and the claim is gone."""
        ...

    async def heartbeat(
        self,
        instance: str,
        hostname: str,
        pid: int,
        ttl_seconds: float,
        stalled_sinks: Sequence[str] = (),
    ) -> dict[str, frozenset[str]]:
        """Record that ``instance`` is alive, and stalled on ``stalled_sinks``; renew all its
        leases but those on ``stalled_sinks``; the live relays, each with the sinks it has
        stalled on."""
        ...

    async def leave(self, instance: str, held: Mapping[str, Sequence[int]]) -> None:
        """Release the leases ``held`` (by sink) and forget ``instance``."""
        ...

    async def open_session(self, instance: str, hostname: str, pid: int) -> RelaySession:
        """Open ``instance``'s liveness session and record it in its row (created if none):
        once the session ends, another relay's :meth:`RelaySession.check` releases the
        instance's leases (see :mod:`gateway.relay.sessions`)."""
        ...

    async def prune(self, retention_seconds: int, limit: int) -> int | None:
        """Delete up to ``limit`` delivered events older than the retention; None if another
        relay is pruning."""
        ...

    async def unserved_sinks(self) -> list[SinkTotals]:
        """The sinks no live lease covers."""
        ...

    async def backlog(self) -> list[Backlog]:
        """Every sink's undelivered events."""
        ...

    async def reset_connections(self) -> None:
        """Replace every pooled connection (one was left unusable)."""
        ...


class PostgresRelayStorage:
    """:class:`RelayStorage` over an asyncpg pool: a connection per call."""

    def __init__(self, pool: asyncpg.Pool, server_runs: ServerRuns | None = None) -> None:
        self.pool = pool
        self.server_runs = server_runs
        """What the pool's new connections reached (the pool must run its ``observe`` on
        each); without it no change is seen, and only the commit's check of where a position
        stands guards the positions in memory."""
        if server_runs is not None:
            server_runs.on_change = pool.expire_connections

    def server_changes(self) -> int:
        return 0 if self.server_runs is None else self.server_runs.changes

    async def read_batch(
        self, after: Position, partitions: Sequence[int], limit: int
    ) -> list[StoredEvent]:
        async with self.pool.acquire() as connection:
            return await outbox.read_batch(connection, after, partitions, limit)

    async def read_earlier_versions(
        self, below: Mapping[str, int], after: Position
    ) -> list[StoredEvent]:
        async with self.pool.acquire() as connection:
            return await outbox.read_earlier_versions(connection, below, after)

    async def has_work(self, sink: str) -> bool:
        async with self.pool.acquire() as connection:
            return await tables.sink_has_work(connection, sink)

    async def register_sink(self, sink: str, *, from_beginning: bool) -> None:
        async with self.pool.acquire() as connection:
            await tables.register_sink(connection, sink, from_beginning=from_beginning)

    async def positions(self, sink: str, partitions: Sequence[int]) -> dict[int, Position]:
        async with self.pool.acquire() as connection:
            return await tables.positions(connection, sink, partitions)

    async def renew_leases(self, sink: str, owner: str, ttl_seconds: float) -> set[int]:
        async with self.pool.acquire() as connection:
            return await tables.renew_leases(connection, sink, owner, ttl_seconds)

    async def claim_leases(
        self, sink: str, owner: str, partitions: Sequence[int], ttl_seconds: float
    ) -> set[int]:
        async with self.pool.acquire() as connection:
            return await tables.claim_leases(connection, sink, owner, partitions, ttl_seconds)

    async def release_leases(self, sink: str, owner: str, partitions: Sequence[int]) -> None:
        async with self.pool.acquire() as connection:
            await tables.release_leases(connection, sink, owner, partitions)

    async def commit_batch(
        self,
        sink: str,
        owner: str,
        moves: Mapping[int, Move],
        dead: Sequence[DeadLetter],
        *,
        server: int | None = None,
    ) -> bool:
        run = None
        if self.server_runs is not None and server is not None:
            run = self.server_runs.run(server)
            if run is None:
                return False  # read from a run the pool has moved on from
        async with self.pool.acquire() as connection:
            return await tables.commit_batch(connection, sink, owner, moves, dead, run)

    async def record_retrying(
        self, sink: str, owner: str, retrying: Mapping[int, int], error: str | None
    ) -> None:
        async with self.pool.acquire() as connection:
            await tables.record_retrying(connection, sink, owner, retrying, error)

    async def claim_replays(
        self, sink: str, owner: str, limit: int, ttl_seconds: float
    ) -> list[Replay]:
        async with self.pool.acquire() as connection:
            return await tables.claim_replays(connection, sink, owner, limit, ttl_seconds)

    async def finish_replays(
        self,
        owner: str,
        delivered: Sequence[Replay],
        failed: Sequence[tuple[Replay, str, bool]],
    ) -> None:
        async with self.pool.acquire() as connection, connection.transaction():
            await tables.finish_replays(connection, owner, delivered, failed)

    async def heartbeat(
        self,
        instance: str,
        hostname: str,
        pid: int,
        ttl_seconds: float,
        stalled_sinks: Sequence[str] = (),
    ) -> dict[str, frozenset[str]]:
        async with self.pool.acquire() as connection:
            await tables.heartbeat(connection, instance, hostname, pid, stalled_sinks)
            await tables.renew_instance_leases(connection, instance, ttl_seconds, stalled_sinks)
            return await tables.live_instances(connection, ttl_seconds)

    async def leave(self, instance: str, held: Mapping[str, Sequence[int]]) -> None:
        async with self.pool.acquire() as connection:
            for sink, partitions in held.items():
                await tables.release_leases(connection, sink, instance, partitions)
            await tables.forget_instance(connection, instance)

    async def open_session(self, instance: str, hostname: str, pid: int) -> RelaySession:
        return await PostgresRelaySession.open(self.pool, instance, hostname, pid)

    async def prune(self, retention_seconds: int, limit: int) -> int | None:
        async with self.pool.acquire() as connection, connection.transaction():
            if not await connection.fetchval(query("try_advisory_xact_lock"), AdvisoryLock.PRUNE):
                return None
            return await outbox.prune(connection, retention_seconds, limit)

    async def unserved_sinks(self) -> list[SinkTotals]:
        async with self.pool.acquire() as connection:
            return await tables.unserved_sinks(connection)

    async def backlog(self) -> list[Backlog]:
        async with self.pool.acquire() as connection:
            return await outbox.backlog(connection)

    async def reset_connections(self) -> None:
        await self.pool.expire_connections()


SESSION_ACQUIRE_TIMEOUT_SECONDS = 10.0
"""How long opening a liveness session waits for a connection of the pool."""


class PostgresRelaySession:
    """A relay's liveness session: a connection taken from the pool for the relay's life and
    never given back while it lives; :meth:`close` ends the session rather than pooling it."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        connection: PoolConnectionProxy[asyncpg.Record],
        instance: str,
        hostname: str,
        pid: int,
    ) -> None:
        self._pool = pool
        self._connection = connection
        self._instance = instance
        self._hostname = hostname
        self._pid = pid

    @classmethod
    async def open(cls, pool: asyncpg.Pool, instance: str, hostname: str, pid: int) -> Self:
        """Take a connection and record its session as ``instance``'s."""
        connection = await pool.acquire(timeout=SESSION_ACQUIRE_TIMEOUT_SECONDS)
        session = cls(pool, connection, instance, hostname, pid)
        try:
            await session._record()
        except BaseException:
            await session.close()
            raise
        return session

    async def _record(self) -> None:
        await tables.record_relay_session(
            self._connection, self._instance, self._hostname, self._pid
        )

    async def check(self, ttl_seconds: float) -> SessionCheck:
        found, recorded = await tables.reap_dead_relays(
            self._connection, self._instance, ttl_seconds
        )
        if not recorded:
            # Another relay took this one for dead (its snapshot predates the session), or a
            # heartbeat re-created the row after it did: record the session again.
            await self._record()
        return found

    async def close(self) -> None:
        self._connection.terminate()
        # A terminated connection goes back to the pool as a free slot, not as a session.
        with contextlib.suppress(asyncpg.InterfaceError):
            await self._pool.release(self._connection)
