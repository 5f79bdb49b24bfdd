"""An in-memory :class:`~gateway.relay.storage.RelayStorage`: the outbox and the relay's
tables as Python objects, with the rules of their SQL.

The rules (each held to PostgreSQL's by ``tests/contract``):

- The outbox is read in ``(txid, id)`` order, and only below the oldest transaction still
  running: an event whose transaction commits late is read after it commits, never skipped.
- A lease is taken only where none is live (or the taker holds it already); renewing extends
  every lease the owner still holds, expired or not, until another relay takes it.
- A commit moves positions only forward, only for the lease's owner, only from where the
  owner read them and only on the server run the batch was read from, with its dead letters,
  all or nothing.
- Operators rewind or retire a sink only while no live lease covers it.
- A relay whose liveness session ended on this run of the server is dead: the next check of
  another relay's session deletes it and releases its leases (``gateway.relay.sessions``);
  a relay whose session lives keeps its leases until they expire, however silent.

Time comes from ``clock`` (seconds), so a simulation can move it as it likes.
"""

from __future__ import annotations

import copy
import time
import uuid
import zlib
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from adapters.base import EventEnvelope
from gateway.errors import SinkInUse, UnknownSink
from gateway.postgres.outbox import PARTITION_COUNT, Backlog, StoredEvent
from gateway.relay.leases import may_claim
from gateway.relay.sessions import RecordedSession, RelaySession, SessionCheck, session_ended
from gateway.relay.tables import DeadLetter, Move, Position, Replay, SinkTotals

Clock = Callable[[], float]


def envelope(
    aggregate_id: str,
    version: int = 1,
    status: str = "pending",
    *,
    sequence: int = 0,
    event_id: uuid.UUID | None = None,
) -> EventEnvelope:
    """An order event (of two units) as the relay hands it to a sink."""
    return EventEnvelope(
        event_id=event_id or uuid.uuid4(),
        sequence=sequence,
        aggregate_type="order",
        aggregate_id=aggregate_id,
        version=version,
        event_type="order.placed" if version == 1 else "order.status_changed",
        payload={"status": status, "total_amount": "10.00", "items": [{"quantity": 2}]},
        headers={},
        occurred_at=datetime.now(UTC),
    )


def partition_of(aggregate_id: str) -> int:
    """The partition of an aggregate's events (a stable hash, as the outbox's column is)."""
    return zlib.crc32(aggregate_id.encode()) % PARTITION_COUNT


@dataclass
class Lease:
    """Who holds a (sink, partition) and until when (``clock`` seconds)."""

    owner: str
    expires: float


@dataclass
class PositionRow:
    """A row of ``relay_positions`` besides its lease."""

    position: Position
    delivered: int = 0
    retrying: int = 0
    last_error: str | None = None
    updated: float = 0.0


@dataclass
class DeadLetterRow:
    """A row of ``dead_letters``."""

    id: int
    sink: str
    event: StoredEvent
    reason: str
    last_error: str
    attempts: int
    replay_requested: bool = False
    claimed_by: str | None = None
    claimed_until: float | None = None
    replayed: bool = False


@dataclass
class _Transaction:
    txid: int
    events: list[StoredEvent] = field(default_factory=list)


class OutboxTransaction:
    """A writer's open transaction: its events are invisible until :meth:`commit`."""

    def __init__(self, storage: InMemoryRelayStorage, txid: int) -> None:
        self._storage = storage
        self.txid = txid

    def append(self, event: EventEnvelope, *, partition: int | None = None) -> StoredEvent:
        """Insert ``event``: it takes the next outbox id now, whenever it commits."""
        return self._storage._insert(self.txid, event, partition)

    def commit(self) -> list[StoredEvent]:
        """Make the transaction's events visible; those events."""
        return self._storage._end(self.txid, committed=True)

    def abort(self) -> None:
        """Drop the transaction's events."""
        self._storage._end(self.txid, committed=False)


@dataclass
class InMemoryRelayStorage:
    """The relay's storage, in memory; ``clock`` decides when leases expire."""

    clock: Clock = time.monotonic
    events: list[StoredEvent] = field(default_factory=list)
    """Committed events, in commit order."""
    rows: dict[tuple[str, int], PositionRow] = field(default_factory=dict)
    leases: dict[tuple[str, int], Lease] = field(default_factory=dict)
    dead_letter_rows: list[DeadLetterRow] = field(default_factory=list)
    instances: dict[str, float] = field(default_factory=dict)
    stalled_sinks: dict[str, frozenset[str]] = field(default_factory=dict)
    """The sinks each live relay has stalled on, as of its last heartbeat."""
    committed_at: dict[int, float] = field(default_factory=dict)
    """When each committed event's transaction committed (outbox id -> clock)."""
    reads: list[tuple[Position, tuple[int, ...]]] = field(default_factory=list)
    commits: int = 0
    fail_reads: int = 0
    """How many of the next reads raise ``OSError`` (PostgreSQL unreachable)."""
    fail_commits: int = 0
    """How many of the next commits raise ``OSError``."""
    sessions: dict[str, RecordedSession[float]] = field(default_factory=dict)
    """The liveness session each relay recorded in its instance row."""
    backends: dict[int, float] = field(default_factory=dict)
    """The server's open sessions: backend pid -> when it started (``pg_stat_activity``)."""
    server_started_at: float = 0.0
    """When the server started (a restart moves it: :meth:`restart_server`)."""
    restarts: int = 0
    """How many times the server restarted or failed over (``server_changes``)."""
    _next_backend_pid: int = 100
    _running: dict[int, _Transaction] = field(default_factory=dict)
    _next_txid: int = 1
    _next_id: int = 1
    _standby: dict[str, object] | None = None
    """What the standby holds (the primary's tables and counters as of its last catch-up)."""
    _not_on_standby: list[StoredEvent] = field(default_factory=list)
    """Events committed since the standby's last catch-up (pruned since or not)."""

    # The writers' side ---------------------------------------------------------------------

    def begin(self) -> OutboxTransaction:
        """Open a writer's transaction (it takes its transaction id now)."""
        txid = self._next_txid
        self._next_txid += 1
        self._running[txid] = _Transaction(txid)
        return OutboxTransaction(self, txid)

    def publish(self, count: int, *, partitions: Sequence[int] | None = None) -> None:
        """Commit ``count`` events, one per aggregate, spread over ``partitions``."""
        spread = list(partitions) if partitions is not None else list(range(PARTITION_COUNT))
        for _ in range(count):
            transaction = self.begin()
            number = self._next_id
            transaction.append(
                envelope(f"o{number}", sequence=number), partition=spread[number % len(spread)]
            )
            transaction.commit()

    def _insert(self, txid: int, event: EventEnvelope, partition: int | None) -> StoredEvent:
        number = self._next_id
        self._next_id += 1
        stored = StoredEvent(
            number,
            txid,
            partition_of(event.aggregate_id) if partition is None else partition,
            event._replace(sequence=number),
        )
        self._running[txid].events.append(stored)
        return stored

    def _end(self, txid: int, *, committed: bool) -> list[StoredEvent]:
        transaction = self._running.pop(txid)
        if not committed:
            return []
        now = self.clock()
        for event in transaction.events:
            self.committed_at[event.id] = now
        self.events.extend(transaction.events)
        self._not_on_standby.extend(transaction.events)
        return transaction.events

    def snapshot_xmin(self) -> int:
        """The oldest transaction still running (else the next to start): the outbox is
        read below it."""
        if self._running:
            return min(self._running)
        # Events may also be placed in ``events`` directly (with transaction ids of their own).
        return max(self._next_txid, max((e.txid for e in self.events), default=0) + 1)

    def _readable(self) -> Iterator[StoredEvent]:
        xmin = self.snapshot_xmin()
        return (e for e in self.events if e.txid < xmin)

    # The tests' view -----------------------------------------------------------------------

    @property
    def delivered(self) -> Counter[str]:
        """Events delivered per sink (the positions' counters)."""
        totals: Counter[str] = Counter()
        for (sink, _), row in self.rows.items():
            totals[sink] += row.delivered
        return totals

    @property
    def retrying(self) -> dict[tuple[str, int], int]:
        """Events waiting for a retry, per (sink, partition)."""
        return {key: row.retrying for key, row in self.rows.items()}

    @property
    def dead_letters(self) -> list[tuple[str, DeadLetter]]:
        """Unresolved dead letters, oldest first, as ``(sink, letter)``."""
        return [
            (row.sink, DeadLetter(row.event, row.reason, row.last_error, row.attempts))
            for row in self.dead_letter_rows
            if not row.replayed
        ]

    def position_of(self, sink: str) -> dict[int, Position]:
        """The sink's position in every partition."""
        return {p: row.position for (s, p), row in self.rows.items() if s == sink}

    def owners(self, sink: str) -> dict[int, str]:
        """The live lease holder of each partition of ``sink``."""
        now = self.clock()
        return {
            p: lease.owner
            for (s, p), lease in self.leases.items()
            if s == sink and lease.expires >= now
        }

    def restart_server(self) -> None:
        """PostgreSQL restarts (or fails over): every session ends at once."""
        self.backends.clear()
        self.server_started_at = self.clock()
        self.restarts += 1

    _REPLICATED = (
        "events",
        "committed_at",
        "rows",
        "leases",
        "dead_letter_rows",
        "instances",
        "stalled_sinks",
        "sessions",
        "_next_txid",
        "_next_id",
    )

    def catch_up_standby(self) -> None:
        """The standby receives everything committed so far (asynchronous replication)."""
        self._standby = {name: copy.deepcopy(getattr(self, name)) for name in self._REPLICATED}
        self._not_on_standby = []

    def fail_over(self) -> list[StoredEvent]:
        """The primary dies and the standby, behind it, is promoted: the commits since its last
        catch-up are lost, and the transaction ids and outbox ids they took are given again.
        Every session ends and every running transaction with them. Returns the lost events."""
        if self._standby is None:
            self.catch_up_standby()
        assert self._standby is not None
        lost, self._not_on_standby = self._not_on_standby, []
        for name, value in self._standby.items():
            setattr(self, name, copy.deepcopy(value))
        self._running.clear()
        self.restart_server()
        return lost

    def steal(self, sink: str, partition: int, thief: str) -> None:
        """Another relay takes the partition (as after this one's lease expired)."""
        self.leases[(sink, partition)] = Lease(thief, self.clock() + 3600)

    # The operators' side (``fanout rewind``, ``sinks retire``, ``dead-letters replay``) ------

    def _lock_idle_sink(self, sink: str, doing: str) -> None:
        if not any(s == sink for s, _ in self.rows):
            raise UnknownSink(sink)
        if owners := sorted(set(self.owners(sink).values())):
            raise SinkInUse(sink, owners, doing)

    def rewind(self, sink: str, moves: Mapping[int, Position]) -> dict[int, Position]:
        """Move ``sink``'s positions back to ``moves`` (never forward), taking the moved
        partitions' expired leases; the partitions moved, with where they were. ``SinkInUse``
        while a live lease covers the sink."""
        self._lock_idle_sink(sink, "rewinding it")
        moved = {}
        for partition, position in moves.items():
            row = self.rows.get((sink, partition))
            if row is not None and position < row.position:
                moved[partition] = row.position
                row.position = position
                row.updated = self.clock()
                self.leases.pop((sink, partition), None)
        return moved

    def retire(self, sink: str) -> tuple[int, int]:
        """Remove the sink's positions, leases and dead letters; how many positions and dead
        letters. ``UnknownSink``, or ``SinkInUse`` while a live lease covers the sink."""
        self._lock_idle_sink(sink, "retiring it")
        keys = [key for key in self.rows if key[0] == sink]
        for key in keys:
            del self.rows[key]
            self.leases.pop(key, None)
        letters = [row for row in self.dead_letter_rows if row.sink == sink]
        self.dead_letter_rows = [row for row in self.dead_letter_rows if row.sink != sink]
        return len(keys), len(letters)

    def request_replay(self, sink: str, event_id: uuid.UUID | None = None) -> int:
        """Ask for ``sink``'s unresolved dead letters (one, or all) to be delivered again."""
        asked = [
            row
            for row in self.dead_letter_rows
            if row.sink == sink
            and not row.replayed
            and event_id in (None, row.event.envelope.event_id)
        ]
        for row in asked:
            row.replay_requested = True
        return len(asked)

    # RelayStorage ------------------------------------------------------------------------

    async def read_batch(
        self, after: Position, partitions: Sequence[int], limit: int
    ) -> list[StoredEvent]:
        self.reads.append((after, tuple(partitions)))
        if self.fail_reads:
            self.fail_reads -= 1
            raise OSError("connection refused")
        wanted = set(partitions)
        found = sorted(
            (e for e in self._readable() if e.position > after and e.partition in wanted),
            key=lambda e: e.position,
        )
        return found[:limit]

    async def read_earlier_versions(
        self, below: Mapping[str, int], after: Position
    ) -> list[StoredEvent]:
        found = (
            e
            for e in self.events
            if e.position > after
            and e.envelope.aggregate_id in below
            and e.envelope.version < below[e.envelope.aggregate_id]
        )
        return sorted(found, key=lambda e: e.position)

    async def has_work(self, sink: str) -> bool:
        positions = self.position_of(sink)
        return any(  # committed, readable or held back by an older running transaction
            e.partition in positions and e.position > positions[e.partition] for e in self.events
        ) or any(self._replay_waits(row, sink) for row in self.dead_letter_rows)

    async def register_sink(self, sink: str, *, from_beginning: bool) -> None:
        start = (0, 0) if from_beginning else (self.snapshot_xmin(), 0)
        for partition in range(PARTITION_COUNT):
            if (sink, partition) not in self.rows:
                self.rows[(sink, partition)] = PositionRow(start, updated=self.clock())

    async def positions(self, sink: str, partitions: Sequence[int]) -> dict[int, Position]:
        return {p: self.rows[(sink, p)].position for p in partitions if (sink, p) in self.rows}

    async def renew_leases(self, sink: str, owner: str, ttl_seconds: float) -> set[int]:
        now = self.clock()
        held = set()
        for (s, partition), lease in self.leases.items():
            if s == sink and lease.owner == owner:
                lease.expires = now + ttl_seconds
                held.add(partition)
        return held

    async def claim_leases(
        self, sink: str, owner: str, partitions: Sequence[int], ttl_seconds: float
    ) -> set[int]:
        now = self.clock()
        taken = set()
        for partition in partitions:
            if (sink, partition) not in self.rows:
                continue
            lease = self.leases.get((sink, partition))
            if lease is None or may_claim(lease.owner, lease.expires, owner, now):
                self.leases[(sink, partition)] = Lease(owner, now + ttl_seconds)
                taken.add(partition)
        return taken

    async def release_leases(self, sink: str, owner: str, partitions: Sequence[int]) -> None:
        for partition in partitions:
            lease = self.leases.get((sink, partition))
            if lease is not None and lease.owner == owner:
                del self.leases[(sink, partition)]
                self.rows[(sink, partition)].retrying = 0

    def server_changes(self) -> int:
        return self.restarts

    async def commit_batch(
        self,
        sink: str,
        owner: str,
        moves: Mapping[int, Move],
        dead: Sequence[DeadLetter],
        *,
        server: int | None = None,
    ) -> bool:
        if self.fail_commits:
            self.fail_commits -= 1
            raise OSError("connection reset")
        if server is not None and server != self.restarts:
            return False
        for partition, move in moves.items():
            lease = self.leases.get((sink, partition))
            row = self.rows.get((sink, partition))
            if lease is None or lease.owner != owner or row is None:
                return False
            if not row.position < move.position:
                return False
            if move.since is not None and row.position != move.since:
                return False
        self.commits += 1
        for letter in dead:
            self._insert_dead_letter(sink, letter)
        now = self.clock()
        for partition, move in moves.items():
            row = self.rows[(sink, partition)]
            row.position = move.position
            row.delivered += move.delivered
            row.retrying = 0
            row.last_error = None
            row.updated = now
        return True

    def _insert_dead_letter(self, sink: str, letter: DeadLetter) -> None:
        event_id = letter.event.envelope.event_id
        for row in self.dead_letter_rows:
            if row.sink == sink and row.event.envelope.event_id == event_id:
                row.reason, row.last_error = letter.reason, letter.error
                row.attempts += letter.attempts
                row.replay_requested = row.replayed = False
                return
        number = max((row.id for row in self.dead_letter_rows), default=0) + 1
        self.dead_letter_rows.append(
            DeadLetterRow(number, sink, letter.event, letter.reason, letter.error, letter.attempts)
        )

    async def record_retrying(
        self, sink: str, owner: str, retrying: Mapping[int, int], error: str | None
    ) -> None:
        now = self.clock()
        for partition, count in retrying.items():
            lease = self.leases.get((sink, partition))
            if lease is None or lease.owner != owner:
                continue
            row = self.rows[(sink, partition)]
            row.retrying = count
            if count > 0:
                row.last_error = error
            row.updated = now

    def _replay_waits(self, row: DeadLetterRow, sink: str) -> bool:
        return row.sink == sink and row.replay_requested and not row.replayed

    async def claim_replays(
        self, sink: str, owner: str, limit: int, ttl_seconds: float
    ) -> list[Replay]:
        now = self.clock()
        claimed = [
            row
            for row in self.dead_letter_rows
            if self._replay_waits(row, sink)
            and (row.claimed_until is None or row.claimed_until < now)
        ][:limit]
        for row in claimed:
            row.claimed_by, row.claimed_until = owner, now + ttl_seconds
        return [
            Replay(row.id, StoredEvent(row.event.id, 0, 0, row.event.envelope), row.attempts)
            for row in claimed
        ]

    async def finish_replays(
        self,
        owner: str,
        delivered: Sequence[Replay],
        failed: Sequence[tuple[Replay, str, bool]],
    ) -> None:
        by_key = {
            (row.id, row.event.envelope.event_id): row
            for row in self.dead_letter_rows
            if row.claimed_by == owner
        }

        def letter(replay: Replay) -> DeadLetterRow | None:
            return by_key.get((replay.dead_letter_id, replay.event.envelope.event_id))

        for replay in delivered:
            if (row := letter(replay)) is not None:
                row.replayed = True
                row.claimed_by = row.claimed_until = None
        for replay, error, keep_requested in failed:
            if (row := letter(replay)) is not None:
                row.last_error = error
                row.attempts += 1
                row.claimed_by = row.claimed_until = None
                row.replay_requested = row.replay_requested and keep_requested

    async def heartbeat(
        self,
        instance: str,
        hostname: str,
        pid: int,
        ttl_seconds: float,
        stalled_sinks: Sequence[str] = (),
    ) -> dict[str, frozenset[str]]:
        now = self.clock()
        self.instances[instance] = now
        self.stalled_sinks[instance] = frozenset(stalled_sinks)
        for (sink, _), lease in self.leases.items():
            if lease.owner == instance and sink not in stalled_sinks:
                lease.expires = now + ttl_seconds
        stale = [i for i, seen in self.instances.items() if seen < now - ttl_seconds]
        for gone in stale:
            self._forget(gone)
        return {i: self.stalled_sinks.get(i, frozenset()) for i in sorted(self.instances)}

    async def leave(self, instance: str, held: Mapping[str, Sequence[int]]) -> None:
        for sink, partitions in held.items():
            await self.release_leases(sink, instance, partitions)
        self._forget(instance)

    def _forget(self, instance: str) -> None:
        self.instances.pop(instance, None)
        self.stalled_sinks.pop(instance, None)
        self.sessions.pop(instance, None)

    async def open_session(self, instance: str, hostname: str, pid: int) -> RelaySession:
        session = InMemoryRelaySession(self, instance)
        session.record()
        return session

    def _open_backend(self) -> int:
        pid = self._next_backend_pid
        self._next_backend_pid += 1
        self.backends[pid] = self.clock()
        return pid

    def _reap(self, instance: str, ttl_seconds: float) -> SessionCheck:
        dead = {
            other
            for other in self.instances
            if other != instance
            and session_ended(self.sessions.get(other), self.server_started_at, self.backends)
        }
        for other in dead:
            self._forget(other)
        for (sink, partition), lease in list(self.leases.items()):
            if lease.owner in dead:
                del self.leases[(sink, partition)]
                self.rows[(sink, partition)].retrying = 0
        now = self.clock()
        live = {i for i, seen in self.instances.items() if seen >= now - ttl_seconds}
        return SessionCheck(frozenset(dead), frozenset(live))

    async def prune(self, retention_seconds: int, limit: int) -> int | None:
        floors: dict[int, Position] = {}
        for (_, partition), row in self.rows.items():
            floors[partition] = min(row.position, floors.get(partition, row.position))
        oldest = self.clock() - retention_seconds
        doomed = sorted(
            (
                e
                for e in self.events
                if e.partition in floors
                and e.position <= floors[e.partition]
                and self.committed_at[e.id] < oldest
            ),
            key=lambda e: e.position,
        )[:limit]
        gone = {e.id for e in doomed}
        self.events = [e for e in self.events if e.id not in gone]
        return len(doomed)

    async def unserved_sinks(self) -> list[SinkTotals]:
        now = self.clock()
        totals = []
        for sink in sorted({s for s, _ in self.rows}):
            rows = {p: row for (s, p), row in self.rows.items() if s == sink}
            leases = [lease for (s, _), lease in self.leases.items() if s == sink]
            if any(lease.expires >= now for lease in leases):
                continue
            latest = max(
                [row.updated for row in rows.values()] + [lease.expires for lease in leases]
            )
            errors = [row.last_error for row in rows.values() if row.last_error is not None]
            totals.append(
                SinkTotals(
                    sink,
                    sum(row.delivered for row in rows.values()),
                    sum(row.retrying for row in rows.values()),
                    sum(1 for d in self.dead_letter_rows if d.sink == sink and not d.replayed),
                    len({lease.owner for lease in leases}),
                    max(errors, default=None),
                    False,
                    max(now - latest, 0.0),
                )
            )
        return totals

    async def backlog(self) -> list[Backlog]:
        now = self.clock()
        found = []
        for sink in sorted({s for s, _ in self.rows}):
            positions = self.position_of(sink)
            waiting = [
                e
                for e in self.events
                if e.partition in positions and e.position > positions[e.partition]
            ]
            oldest = min((self.committed_at[e.id] for e in waiting), default=None)
            found.append(Backlog(sink, len(waiting), None if oldest is None else now - oldest))
        return found

    async def reset_connections(self) -> None:
        return None


class InMemoryRelaySession:
    """A relay's liveness session with the in-memory server: a backend of its own, which
    :meth:`close` (or :meth:`InMemoryRelayStorage.restart_server`) ends."""

    def __init__(self, storage: InMemoryRelayStorage, instance: str) -> None:
        self._storage = storage
        self._instance = instance
        self._backend = storage._open_backend()

    def record(self) -> None:
        """Record this session as its relay's (creating the relay's row if none)."""
        storage = self._storage
        storage.instances[self._instance] = storage.clock()
        storage.sessions[self._instance] = RecordedSession(
            self._backend, storage.backends[self._backend], storage.server_started_at
        )

    async def check(self, ttl_seconds: float) -> SessionCheck:
        storage = self._storage
        if self._backend not in storage.backends:
            raise ConnectionResetError("the liveness session ended")
        found = storage._reap(self._instance, ttl_seconds)
        recorded = storage.sessions.get(self._instance)
        if recorded is None or recorded.backend_pid != self._backend:
            self.record()
        return found

    async def close(self) -> None:
        self._storage.backends.pop(self._backend, None)
