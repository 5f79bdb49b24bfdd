"""The two relay storages the contract suite runs against, behind one harness: a writer's
transactions, the passing of time, and the operators' commands, for each."""

from __future__ import annotations

import asyncio
import dataclasses
import time
import uuid
from collections.abc import Mapping
from typing import Protocol

import asyncpg
from asyncpg.pool import PoolConnectionProxy

from gateway.postgres.outbox import StoredEvent
from gateway.postgres.server_runs import ServerRuns
from gateway.relay import tables
from gateway.relay.storage import PostgresRelayStorage, RelayStorage
from gateway.relay.tables import Position
from simulation.relay_storage import InMemoryRelayStorage, OutboxTransaction, envelope


class Writer(Protocol):
    """A writer's open transaction on the outbox."""

    async def append(self, aggregate_id: str, version: int = 1) -> StoredEvent:
        """Insert an event of ``aggregate_id`` at ``version``; where it stands."""
        ...

    async def commit(self) -> None:
        """Commit the transaction."""
        ...

    async def abort(self) -> None:
        """Roll the transaction back."""
        ...


class Harness(Protocol):
    """A storage under test, and what a test does besides calling it."""

    storage: RelayStorage

    async def begin(self) -> Writer:
        """Open a writer's transaction."""
        ...

    async def elapse(self, seconds: float) -> None:
        """Let ``seconds`` pass on the storage's clock."""
        ...

    async def retrying(self, sink: str) -> dict[int, int]:
        """Events waiting for a retry, per partition of ``sink``."""
        ...

    async def dead_letter_attempts(self, sink: str) -> dict[uuid.UUID, int]:
        """The unresolved dead letters of ``sink``: event id -> attempts."""
        ...

    async def rewind(self, sink: str, moves: Mapping[int, Position]) -> None:
        """Move positions back, as ``fanout rewind`` does."""
        ...

    async def retire(self, sink: str) -> None:
        """Remove the sink, as ``fanout sinks retire`` does."""
        ...

    async def request_replay(self, sink: str) -> int:
        """Ask for every dead letter of ``sink`` to be replayed; how many."""
        ...

    async def fail_over(self) -> None:
        """The storage's connections reach another server run, as after a failover (and the
        storage counts it in ``server_changes``)."""
        ...

    async def record_on_an_earlier_server_run(self, instance: str) -> None:
        """Make ``instance``'s recorded session one of a run of the server before this one
        (as it is after PostgreSQL restarted or failed over)."""
        ...


async def publish(harness: Harness, aggregate_id: str, version: int = 1) -> StoredEvent:
    """One event in a transaction of its own, committed."""
    writer = await harness.begin()
    event = await writer.append(aggregate_id, version)
    await writer.commit()
    return event


class _MemoryWriter:
    def __init__(self, transaction: OutboxTransaction) -> None:
        self._transaction = transaction

    async def append(self, aggregate_id: str, version: int = 1) -> StoredEvent:
        return self._transaction.append(envelope(aggregate_id, version))

    async def commit(self) -> None:
        self._transaction.commit()

    async def abort(self) -> None:
        self._transaction.abort()


class ManualClock:
    """A clock that moves only when told to."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class MemoryHarness:
    """The in-memory storage, with a manual clock."""

    def __init__(self) -> None:
        self.clock = ManualClock()
        self.memory = InMemoryRelayStorage(clock=self.clock)
        self.storage: RelayStorage = self.memory

    async def begin(self) -> Writer:
        return _MemoryWriter(self.memory.begin())

    async def elapse(self, seconds: float) -> None:
        self.clock.now += seconds

    async def fail_over(self) -> None:
        self.memory.restart_server()

    async def retrying(self, sink: str) -> dict[int, int]:
        return {p: count for (s, p), count in self.memory.retrying.items() if s == sink}

    async def dead_letter_attempts(self, sink: str) -> dict[uuid.UUID, int]:
        return {
            letter.event.envelope.event_id: letter.attempts
            for name, letter in self.memory.dead_letters
            if name == sink
        }

    async def rewind(self, sink: str, moves: Mapping[int, Position]) -> None:
        self.memory.rewind(sink, moves)

    async def retire(self, sink: str) -> None:
        self.memory.retire(sink)

    async def request_replay(self, sink: str) -> int:
        return self.memory.request_replay(sink)

    async def record_on_an_earlier_server_run(self, instance: str) -> None:
        recorded = self.memory.sessions[instance]
        self.memory.sessions[instance] = dataclasses.replace(
            recorded, server_started_at=recorded.server_started_at - 3600
        )


class _PostgresWriter:
    def __init__(self, connection: PoolConnectionProxy, pool: asyncpg.Pool) -> None:
        self._connection = connection
        self._pool = pool
        self._transaction = connection.transaction()

    async def start(self) -> None:
        await self._transaction.start()

    async def append(self, aggregate_id: str, version: int = 1) -> StoredEvent:
        event = envelope(aggregate_id, version)
        row = await self._connection.fetchrow(
            "INSERT INTO outbox (event_id, aggregate_type, aggregate_id, version, event_type,"
            " payload, headers) VALUES ($1, $2, $3, $4, $5, $6, $7)"
            " RETURNING id, txid, partition",
            event.event_id,
            event.aggregate_type,
            event.aggregate_id,
            event.version,
            event.event_type,
            event.payload,
            event.headers,
        )
        assert row is not None
        return StoredEvent(
            row["id"], int(row["txid"]), row["partition"], event._replace(sequence=row["id"])
        )

    async def commit(self) -> None:
        try:
            await self._transaction.commit()
        finally:
            await self._pool.release(self._connection)

    async def abort(self) -> None:
        try:
            await self._transaction.rollback()
        finally:
            await self._pool.release(self._connection)


class PostgresHarness:
    """:class:`PostgresRelayStorage` over a real, migrated PostgreSQL, its pool's server runs
    observed (``runs``, with the pool's server observed first)."""

    def __init__(self, pool: asyncpg.Pool, runs: ServerRuns, other_server_url: str) -> None:
        self.pool = pool
        self.runs = runs
        self.storage: RelayStorage = PostgresRelayStorage(pool, runs)
        self._other_server_url = other_server_url

    async def fail_over(self) -> None:
        # Another server's run seen, then the pool's own again: the run the pool reaches now
        # is a later change than any before.
        other = await asyncpg.connect(self._other_server_url)
        try:
            await self.runs.observe(other)
        finally:
            await other.close()
        async with self.pool.acquire() as connection:
            await self.runs.observe(connection)

    async def begin(self) -> Writer:
        writer = _PostgresWriter(await self.pool.acquire(), self.pool)
        await writer.start()
        return writer

    async def elapse(self, seconds: float) -> None:
        """Wait until the server's clock has moved ``seconds`` on (leases expire by it)."""
        start = await self.pool.fetchval("SELECT clock_timestamp()")
        deadline = time.monotonic() + seconds + 10

        async def passed() -> bool:
            elapsed = await self.pool.fetchval("SELECT clock_timestamp() - $1::timestamptz", start)
            return bool(elapsed.total_seconds() > seconds)

        while not await passed():
            assert time.monotonic() < deadline, "the server's clock did not move on"
            await asyncio.sleep(seconds / 10)

    async def retrying(self, sink: str) -> dict[int, int]:
        rows = await self.pool.fetch(
            "SELECT partition, retrying FROM relay_positions WHERE sink = $1", sink
        )
        return {row["partition"]: row["retrying"] for row in rows}

    async def dead_letter_attempts(self, sink: str) -> dict[uuid.UUID, int]:
        rows = await self.pool.fetch(
            "SELECT event_id, attempts FROM dead_letters WHERE sink = $1 AND replayed_at IS NULL",
            sink,
        )
        return {row["event_id"]: row["attempts"] for row in rows}

    async def rewind(self, sink: str, moves: Mapping[int, Position]) -> None:
        async with self.pool.acquire() as connection, connection.transaction():
            await tables.lock_idle_sink(connection, sink, "rewinding it")
            await tables.move_positions_back(connection, sink, moves)

    async def retire(self, sink: str) -> None:
        async with self.pool.acquire() as connection:
            await tables.retire_sink(connection, sink)

    async def request_replay(self, sink: str) -> int:
        async with self.pool.acquire() as connection:
            return await tables.request_replay(connection, sink, None)

    async def record_on_an_earlier_server_run(self, instance: str) -> None:
        await self.pool.execute(
            "UPDATE relay_instances SET server_started_at = server_started_at - interval '1 hour'"
            " WHERE id = $1",
            instance,
        )
