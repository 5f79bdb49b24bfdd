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

from gateway.errors import SinkInUse, UnknownSink
from gateway.postgres.database import Connection
from gateway.postgres.queries import query

Position = tuple[int, int]
"""``(txid, id)``: a partition's position, after which it reads."""


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
    positions = await connection.fetch(query("sink_positions_all"), sink)
    if not positions:
        raise UnknownSink(sink)
    firsts = {
        row["partition"]: (row["txid"], row["id"])
        for row in await connection.fetch(query("first_outbox_events_since"), to)
    }
    moves: dict[int, tuple[Position, Position]] = {}
    for row in positions:
        current = (row["position_txid"], row["position_id"])
        new = rewound_position(current, firsts.get(row["partition"]))
        if new is not None:
            moves[row["partition"]] = (current, new)
    events = 0
    if moves:
        partitions = sorted(moves)
        counted = await connection.fetch(
            query("count_outbox_between"),
            partitions,
            [moves[p][1][0] for p in partitions],
            [moves[p][1][1] for p in partitions],
            [moves[p][0][0] for p in partitions],
            [moves[p][0][1] for p in partitions],
        )
        events = sum(row["events"] for row in counted)
    oldest = await connection.fetchval(query("oldest_outbox_event"))
    return RewindPlan(sink, to, moves, events, oldest)


async def rewind(connection: Connection, sink: str, to: datetime) -> RewindPlan:
    """Move ``sink``'s positions back to deliver again the events kept since ``to``, in one
    transaction; ``SinkInUse`` while a relay holds a lease on it."""
    async with connection.transaction():
        rows = await connection.fetch(query("lock_sink_positions"), sink)
        if not rows:
            raise UnknownSink(sink)
        owners = sorted({row["owner"] for row in rows if row["leased"]})
        if owners:
            raise SinkInUse(sink, owners, doing="rewinding it")
        plan = await plan_rewind(connection, sink, to)
        if plan.moves:
            partitions = sorted(plan.moves)
            await connection.execute(
                query("rewind_positions"),
                sink,
                partitions,
                [plan.moves[p][1][0] for p in partitions],
                [plan.moves[p][1][1] for p in partitions],
            )
    return plan
