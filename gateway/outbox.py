"""The outbox table: the only module that knows its SQL."""

from __future__ import annotations

from collections.abc import Sequence

from gateway.database import Connection
from gateway.models import Event
from gateway.queries import query


async def append(
    connection: Connection, events: Sequence[Event], *, notify_channel: str | None
) -> None:
    """Append ``events`` in the connection's current transaction.

    With a ``notify_channel``, a NOTIFY on it is queued too; PostgreSQL delivers it only when
    the transaction commits, so a relay never wakes for an event it cannot read yet.
    """
    if not events:
        return
    await connection.executemany(
        query("append_outbox_event"),
        [
            (
                event.event_id,
                event.aggregate_type,
                event.aggregate_id,
                event.version,
                event.event_type,
                event.payload,
                event.headers,
            )
            for event in events
        ],
    )
    if notify_channel is not None:
        await connection.execute(query("notify_outbox"), notify_channel)
