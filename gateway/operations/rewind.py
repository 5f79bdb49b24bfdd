"""``fanout rewind``: move a sink's positions back so that the relay delivers the events kept
in the outbox since a time again (the stores' version guards make that harmless).

Only while no relay holds the sink: a relay's positions in memory would move them forward
again. Events the outbox no longer keeps (``relay.retention_seconds``) cannot be delivered
again; ``fanout backfill`` rebuilds a store from PostgreSQL's state instead.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from gateway.errors import UnknownSink
from gateway.postgres import outbox
from gateway.postgres.database import Connection
from gateway.postgres.outbox import PARTITIONS
from gateway.relay import tables
from gateway.relay.tables import Position


def rewound_position(current: Position, first_since: Position | None) -> Position | None:
    """Where a partition at ``current`` moves to deliver again the events from
    ``first_since`` (its first kept event at or after the time) on; ``None``: it stays (no
    such event, or none of them delivered yet)."""
    if first_since is None or first_since > current:
        return None
    txid, event_id = first_since
    return (txid, event_id - 1)


@dataclass(frozen=True)
class RewindPlan:
    """What rewinding a sink to a time does."""

    sink: str
    to: datetime
    moves: dict[int, tuple[Position, Position]]
    """Partition -> (current position, new position), for the partitions that move."""
    events: int
    """Events delivered again."""
    oldest_kept: datetime | None
    """The oldest event the outbox keeps; older ones were pruned (or never existed)."""

    def as_json(self) -> dict[str, Any]:
        """The plan as JSON."""
        return {
            "sink": self.sink,
            "to": self.to.isoformat(),
            "partitions": sorted(self.moves),
            "events": self.events,
            "oldest_kept": self.oldest_kept.isoformat() if self.oldest_kept else None,
        }


async def plan_rewind(connection: Connection, sink: str, to: datetime) -> RewindPlan:
    """What rewinding ``sink`` to ``to`` would do; ``UnknownSink`` if it has no positions."""
    current = await tables.positions(connection, sink, PARTITIONS)
    if not current:
        raise UnknownSink(sink)
    firsts = await outbox.first_events_since(connection, to)
    moves: dict[int, tuple[Position, Position]] = {}
    for partition, position in current.items():
        new = rewound_position(position, firsts.get(partition))
        if new is not None:
            moves[partition] = (position, new)
    spans = {partition: (new, old) for partition, (old, new) in moves.items()}
    events = await outbox.count_between(connection, spans) if moves else 0
    return RewindPlan(sink, to, moves, events, await outbox.oldest_event_at(connection))


async def rewind(connection: Connection, sink: str, to: datetime) -> RewindPlan:
    """Move ``sink``'s positions back to deliver again the events kept since ``to``, in one
    transaction; ``SinkInUse`` while a relay holds a lease on it."""
    async with connection.transaction():
        await tables.lock_idle_sink(connection, sink, "rewinding it")
        plan = await plan_rewind(connection, sink, to)
        if plan.moves:
            new = {partition: moved for partition, (_, moved) in plan.moves.items()}
            await tables.move_positions_back(connection, sink, new)
    return plan
