"""The shard's side of the place-order saga: one durable decision per reservation.

The transaction that creates an order records ``created`` for it; whoever gives up on the
order before it exists (the sweeper when its reservation expired, the writer when creating it
certainly failed) records ``abandoned`` before the catalog gives its units back. The first
decision recorded wins and is never changed, so an order is never created after its units were
released, and units are never released once the order exists.

A shard that an order moved away from (``fanout shards move``) keeps its tombstone, and the
decision moved with the order. Asked to decide on such an order, the shard records nothing and
answers ``moved``: the decision belongs to the shard the order lives on, and an ``abandoned``
recorded here, where the move's last step deleted the order's decision, would give back the
units of a live order.
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
    MOVED = "moved"
    """Never recorded: the answer of a shard that holds the order's tombstone and not the
    order (it moved away; the shard it moved to holds its decision)."""


async def decide(
    connection: Connection, order_id: UUID, wanted: Decision, timeout_seconds: float | None = None
) -> Decision:
    """Record ``wanted`` for order ``order_id`` unless a decision was recorded already; the
    decision that stands, or ``MOVED`` (nothing recorded) when the order moved away from this
    shard. Waits (at most ``timeout_seconds``) for a transaction that is recording one."""
    decided = await connection.fetchval(
        query("decide_reservation"), order_id, wanted.value, timeout=timeout_seconds
    )
    return Decision(decided)
