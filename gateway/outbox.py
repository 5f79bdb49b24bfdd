"""The outbox table: the only module that knows its SQL."""

from __future__ import annotations

from collections.abc import Sequence

from gateway.database import Connection
from gateway.models import Event
from gateway.queries import query

# Every insert into the outbox notifies this channel when its transaction commits (a trigger
# of migration 0002 does it), so a relay can LISTEN instead of polling.
CHANNEL = "fanout_outbox"


def _row(event: Event) -> tuple[object, ...]:
    return (
        event.event_id,
        event.aggregate_type,
        event.aggregate_id,
        event.version,
        event.event_type,
        event.payload,
        event.headers,
    )


async def append(connection: Connection, events: Sequence[Event]) -> None:
    """Append ``events`` in the connection's current transaction."""
    if len(events) == 1:
        await connection.execute(query("append_outbox_event"), *_row(events[0]))
    elif events:
        await connection.executemany(query("append_outbox_event"), [_row(e) for e in events])
