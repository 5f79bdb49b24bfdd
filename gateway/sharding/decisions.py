"""The shard's side of the place-order saga: one durable decision per reservation.

The transaction that creates an order records ``created`` for it; whoever gives up on the
order before it exists (the sweeper when its reservation expired, the writer when creating it
certainly failed) records ``abandoned`` before the catalog gives its units back. The first
decision recorded wins and is never changed, so an order is never created after its units were
released, and units are never released once the order exists.
"""

from __future__ import annotations

from enum import StrEnum
from uuid import UUID

from gateway.postgres.database import Connection
from gateway.postgres.queries import query


class Decision(StrEnum):
    """What was decided about a reservation's order."""

    CREATED = "created"
    ABANDONED = "abandoned"


async def decide(
    connection: Connection, order_id: UUID, wanted: Decision, timeout_seconds: float | None = None
) -> Decision:
    """Record ``wanted`` for order ``order_id`` unless a decision was recorded already; the
    decision that stands. Waits (at most ``timeout_seconds``) for a transaction that is
    recording one."""
    decided = await connection.fetchval(
        query("decide_reservation"), order_id, wanted.value, timeout=timeout_seconds
    )
    return Decision(decided)
