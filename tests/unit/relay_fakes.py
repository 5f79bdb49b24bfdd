"""An in-memory :class:`RelayStorage`: the outbox and the relay's tables as Python objects,
with the same rules as their SQL (leases fence position moves, positions only move forward,
reads come in ``(txid, id)`` order)."""

from __future__ import annotations

import time
import uuid
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from adapters.base import EventEnvelope
from gateway.postgres.outbox import PARTITION_COUNT, Backlog, StoredEvent
from gateway.relay.tables import DeadLetter, Move, Position, Replay, SinkTotals


def envelope(
    aggregate_id: str, version: int = 1, status: str = "pending", *, sequence: int = 0
) -> EventEnvelope:
    """An order event (of two units) as the relay hands it to a sink."""
    return EventEnvelope(
        event_id=uuid.uuid4(),
        sequence=sequence,
        aggregate_type="order",
        aggregate_id=aggregate_id,
        version=version,
        event_type="order.placed" if version == 1 else "order.status_changed",
        payload={"status": status, "total_amount": "10.00", "items": [{"quantity": 2}]},
        headers={},
        occurred_at=datetime.now(UTC),
    )


@dataclass
class Lease:
    owner: str
    expires: float


@dataclass
class InMemoryRelayStorage:
    """The relay's storage, in memory; ``clock`` decides when leases expire."""

    clock: Callable[[], float] = time.monotonic
    events: list[StoredEvent] = field(default_factory=list)
    sink_positions: dict[tuple[str, int], Position] = field(default_factory=dict)
    leases: dict[tuple[str, int], Lease] = field(default_factory=dict)
    delivered: Counter[str] = field(default_factory=Counter)
    dead_letters: list[tuple[str, DeadLetter]] = field(default_factory=list)
    retrying: dict[tuple[str, int], int] = field(default_factory=dict)
    instances: dict[str, float] = field(default_factory=dict)
    reads: list[tuple[Position, tuple[int, ...]]] = field(default_factory=list)
    commits: int = 0
    fail_reads: int = 0
    """How many of the next reads raise ``OSError`` (PostgreSQL unreachable)."""
    fail_commits: int = 0
    """How many of the next commits raise ``OSError``."""

    def publish(self, count: int, *, partitions: Sequence[int] | None = None) -> None:
        """Commit ``count`` events, one per aggregate, spread over ``partitions``."""
        spread = list(partitions) if partitions is not None else list(range(PARTITION_COUNT))
        for _ in range(count):
            number = len(self.events) + 1
            self.events.append(
                StoredEvent(
                    number,
                    number,
                    spread[number % len(spread)],
                    envelope(f"o{number}", sequence=number),
                )
            )

    def position_of(self, sink: str) -> dict[int, Position]:
        """The sink's position in every partition."""
        return {p: pos for (s, p), pos in self.sink_positions.items() if s == sink}

    def owners(self, sink: str) -> dict[int, str]:
        """The live lease holder of each partition of ``sink``."""
        now = self.clock()
        return {
            p: lease.owner
            for (s, p), lease in self.leases.items()
            if s == sink and lease.expires > now
        }

    def steal(self, sink: str, partition: int, thief: str) -> None:
        """Another relay takes the partition (as after this one's lease expired)."""
        self.leases[(sink, partition)] = Lease(thief, self.clock() + 3600)

    async def read_batch(
        self, after: Position, partitions: Sequence[int], limit: int
    ) -> list[StoredEvent]:
        self.reads.append((after, tuple(partitions)))
        if self.fail_reads:
            self.fail_reads -= 1
            raise OSError("connection refused")
        wanted = set(partitions)
        return [e for e in self.events if e.position > after and e.partition in wanted][:limit]

    async def read_earlier_versions(
        self, below: Mapping[str, int], after: Position
    ) -> list[StoredEvent]:
        return [
            e
            for e in self.events
            if e.position > after
            and e.envelope.aggregate_id in below
            and e.envelope.version < below[e.envelope.aggregate_id]
        ]

    async def has_work(self, sink: str) -> bool:
        positions = self.position_of(sink)
        return any(e.position > positions[e.partition] for e in self.events)

    async def register_sink(self, sink: str, *, from_beginning: bool) -> None:
        start = (0, 0) if from_beginning else max((e.position for e in self.events), default=(0, 0))
        for partition in range(PARTITION_COUNT):
            self.sink_positions.setdefault((sink, partition), start)

    async def positions(self, sink: str, partitions: Sequence[int]) -> dict[int, Position]:
        return {p: self.sink_positions[(sink, p)] for p in partitions}

    async def renew_leases(self, sink: str, owner: str, ttl_seconds: float) -> set[int]:
        now = self.clock()
        held = set()
        for (s, partition), lease in self.leases.items():
            if s == sink and lease.owner == owner and lease.expires > now:
                lease.expires = now + ttl_seconds
                held.add(partition)
        return held

    async def claim_leases(
        self, sink: str, owner: str, partitions: Sequence[int], ttl_seconds: float
    ) -> set[int]:
        now = self.clock()
        taken = set()
        for partition in partitions:
            lease = self.leases.get((sink, partition))
            if lease is None or lease.expires <= now or lease.owner == owner:
                self.leases[(sink, partition)] = Lease(owner, now + ttl_seconds)
                taken.add(partition)
        return taken

    async def release_leases(self, sink: str, owner: str, partitions: Sequence[int]) -> None:
        for partition in partitions:
            lease = self.leases.get((sink, partition))
            if lease is not None and lease.owner == owner:
                del self.leases[(sink, partition)]

    async def commit_batch(
        self, sink: str, owner: str, moves: Mapping[int, Move], dead: Sequence[DeadLetter]
    ) -> bool:
        if self.fail_commits:
            self.fail_commits -= 1
            raise OSError("connection reset")
        for partition, move in moves.items():
            lease = self.leases.get((sink, partition))
            if lease is None or lease.owner != owner:
                return False
            if not self.sink_positions[(sink, partition)] < move.position:
                return False
        self.commits += 1
        self.dead_letters.extend((sink, letter) for letter in dead)
        for partition, move in moves.items():
            self.sink_positions[(sink, partition)] = move.position
            self.delivered[sink] += move.delivered
            self.retrying[(sink, partition)] = 0
        return True

    async def record_retrying(
        self, sink: str, owner: str, retrying: Mapping[int, int], error: str | None
    ) -> None:
        for partition, count in retrying.items():
            self.retrying[(sink, partition)] = count

    async def claim_replays(
        self, sink: str, owner: str, limit: int, ttl_seconds: float
    ) -> list[Replay]:
        return []

    async def finish_replays(
        self, delivered: Sequence[int], failed: Sequence[tuple[int, str, bool]]
    ) -> None:
        return None

    async def heartbeat(
        self, instance: str, hostname: str, pid: int, ttl_seconds: float
    ) -> list[str]:
        now = self.clock()
        self.instances[instance] = now
        for lease in self.leases.values():
            if lease.owner == instance and lease.expires > now:
                lease.expires = now + ttl_seconds
        return sorted(i for i, seen in self.instances.items() if seen > now - ttl_seconds)

    async def leave(self, instance: str, held: Mapping[str, Sequence[int]]) -> None:
        for sink, partitions in held.items():
            await self.release_leases(sink, instance, partitions)
        self.instances.pop(instance, None)

    async def prune(self, retention_seconds: int, limit: int) -> int | None:
        return 0

    async def unserved_sinks(self) -> list[SinkTotals]:
        return []

    async def backlog(self) -> list[Backlog]:
        return []

    async def reset_connections(self) -> None:
        return None
