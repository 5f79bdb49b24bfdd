"""The outbox table: the only module that knows its SQL."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, NamedTuple
from uuid import UUID, uuid4

import asyncpg
from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from adapters.base import EventEnvelope
from gateway.errors import GatewayError
from gateway.postgres.database import Connection
from gateway.postgres.queries import query
from gateway.telemetry.propagation import with_trace_context

# Every insert into the outbox notifies this channel when its transaction commits (a trigger
# of migration 0002 does it), so a relay can LISTEN instead of polling.
CHANNEL = "fanout_outbox"


class Event(BaseModel):
    """An event to append to the outbox with :meth:`gateway.Gateway.publish`.

    ``version`` is the aggregate's version after the change; sinks use it to ignore events
    older than what they already hold.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    aggregate_type: Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_.-]{0,99}$")]
    aggregate_id: Annotated[str, StringConstraints(min_length=1, max_length=200)]
    event_type: Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_.-]{0,99}$")]
    version: int = Field(default=1, ge=1)
    payload: dict[str, Any]
    headers: dict[str, str] = Field(default_factory=dict)
    event_id: UUID = Field(default_factory=uuid4)


def _row(event: Event) -> tuple[object, ...]:
    return (
        event.event_id,
        event.aggregate_type,
        event.aggregate_id,
        event.version,
        event.event_type,
        event.payload,
        with_trace_context(event.headers),
    )


async def append(connection: Connection, events: Sequence[Event]) -> None:
    """Append ``events`` in the connection's current transaction."""
    if len(events) == 1:
        await connection.execute(query("append_outbox_event"), *_row(events[0]))
    elif events:
        await connection.executemany(query("append_outbox_event"), [_row(e) for e in events])


async def append_order_events(connection: Connection, events: Sequence[Event]) -> None:
    """Append an order's ``events`` to the outbox and to the order's stream (its history,
    kept beyond the outbox's retention), in the connection's current transaction."""
    if len(events) == 1:
        await connection.execute(query("append_order_event"), *_row(events[0]))
    elif events:
        await connection.executemany(query("append_order_event"), [_row(e) for e in events])


class StoredEvent(NamedTuple):
    """An outbox row as the relay reads it: the event and where it stands in the outbox.

    A named tuple, like :class:`EventEnvelope`, because the relay builds one per event.
    """

    id: int
    txid: int
    partition: int
    envelope: EventEnvelope

    @property
    def position(self) -> tuple[int, int]:
        """``(txid, id)``: the order the relay reads events in."""
        return (self.txid, self.id)


PARTITION_COUNT = 16
"""How many partitions the outbox's events are spread over. The schema states the same number
twice (the ``outbox.partition`` generated column and the range check of ``relay_positions``);
a test checks that the three agree."""
PARTITIONS = tuple(range(PARTITION_COUNT))

# The columns ``read_outbox_batch`` returns: where the event stands, then the fields of an
# EventEnvelope in its order, so that each event is built from a slice of the row.
BATCH_COLUMNS = ("txid", "partition", *EventEnvelope._fields)


def envelope_of(row: asyncpg.Record, sequence: int) -> EventEnvelope:
    """The sink's view of an outbox (or dead-letter) row; ``sequence`` is its outbox id."""
    return EventEnvelope(
        event_id=row["event_id"],
        sequence=sequence,
        aggregate_type=row["aggregate_type"],
        aggregate_id=row["aggregate_id"],
        version=row["version"],
        event_type=row["event_type"],
        payload=row["payload"],
        headers=row["headers"],
        occurred_at=row["occurred_at"],
    )


async def read_batch(
    connection: Connection,
    after: tuple[int, int],
    partitions: Sequence[int],
    limit: int,
) -> list[StoredEvent]:
    """Up to ``limit`` events of ``partitions`` after position ``after``, in position order.

    Reads only events of transactions older than every transaction still running, so an
    event that commits late is read after it commits, never skipped.
    """
    rows = await connection.fetch(
        query("read_outbox_batch"), after[0], after[1], list(partitions), limit
    )
    return _stored_events(rows)


_SEQUENCE_COLUMN = BATCH_COLUMNS.index("sequence")


async def read_earlier_versions(
    connection: Connection, below: Mapping[str, int], after: tuple[int, int]
) -> list[StoredEvent]:
    """Events of the aggregates in ``below`` with a version below the one given there, past
    position ``after``, in position order.

    Committed events only, but read whatever transactions still run: an aggregate's earlier
    version commits before its next one is written, though its transaction id may be the
    higher one, and so lie past a batch that holds the next version.
    """
    if not below:
        return []
    rows = await connection.fetch(
        query("read_earlier_versions"), list(below), list(below.values()), after[0], after[1]
    )
    return _stored_events(rows)


def _stored_events(rows: Sequence[asyncpg.Record]) -> list[StoredEvent]:
    """Events from rows of :data:`BATCH_COLUMNS`."""
    if rows:
        check_batch_columns(tuple(rows[0].keys()))
    # By position rather than by name (the columns were checked above): the relay builds an
    # event per row, and this takes a third of the time.
    make_envelope = EventEnvelope._make
    return [
        StoredEvent(row[_SEQUENCE_COLUMN], row[0], row[1], make_envelope(row[2:])) for row in rows
    ]


def check_batch_columns(columns: tuple[str, ...]) -> None:
    """Raise unless the batch query's columns are :data:`BATCH_COLUMNS`, in that order."""
    if columns != BATCH_COLUMNS:
        raise GatewayError(
            "the outbox batch query returns the columns "
            f"{', '.join(columns)}, but events are built from {', '.join(BATCH_COLUMNS)}"
        )


async def prune(connection: Connection, older_than_seconds: int, limit: int) -> int:
    """Delete up to ``limit`` events older than the retention that every sink has passed."""
    result: str = await connection.execute(query("prune_outbox"), float(older_than_seconds), limit)
    return int(result.split()[-1])


@dataclass(frozen=True)
class Backlog:
    """Undelivered events of one sink."""

    sink: str
    events: int
    oldest_age_seconds: float | None


async def backlog(connection: Connection) -> list[Backlog]:
    """The backlog of every registered sink."""
    rows = await connection.fetch(query("outbox_backlog"))
    return [Backlog(row["sink"], row["backlog"], row["oldest_age_seconds"]) for row in rows]


async def first_events_since(connection: Connection, since: datetime) -> dict[int, tuple[int, int]]:
    """Per partition, the position ``(txid, id)`` of the first event kept (in read order)
    that occurred at or after ``since``."""
    rows = await connection.fetch(query("first_outbox_events_since"), since)
    return {row["partition"]: (row["txid"], row["id"]) for row in rows}


async def count_between(
    connection: Connection, spans: Mapping[int, tuple[tuple[int, int], tuple[int, int]]]
) -> int:
    """The events kept after the first position and up to the second, per partition of
    ``spans``, all told."""
    partitions = sorted(spans)
    rows = await connection.fetch(
        query("count_outbox_between"),
        partitions,
        [spans[p][0][0] for p in partitions],
        [spans[p][0][1] for p in partitions],
        [spans[p][1][0] for p in partitions],
        [spans[p][1][1] for p in partitions],
    )
    return sum(row["events"] for row in rows)


async def oldest_event_at(connection: Connection) -> datetime | None:
    """When the oldest event the outbox keeps occurred; ``None`` when it is empty."""
    row = await connection.fetchrow(query("doctor_outbox_size"))
    return row["oldest_event_at"] if row is not None else None
