"""The decisions of sharded mode's place-order saga, as small functions of what is known."""

from __future__ import annotations

import asyncio

from gateway.postgres.database import is_unavailability
from gateway.sharding.decisions import Decision
from gateway.sharding.reservations import Settlement
from gateway.write_path.order_status import RESTOCKING_STATUSES, OrderStatus


def release_at_once(error: BaseException) -> bool:
    """Whether a reservation may be released as soon as creating its order failed with
    ``error``: only when the shard certainly wrote nothing.

    A refusal (bad input, a constraint, a raised exception) rolled the order back. A lost
    connection, a timeout or a cancellation may have hit the commit itself, so the order may
    exist: the sweeper settles that reservation once it expires, by asking the shard.
    """
    return not (
        is_unavailability(error) or isinstance(error, TimeoutError | asyncio.CancelledError)
    )


def settlement_of_expired(
    decision: Decision, order_status: OrderStatus | None, moved_to: str | None = None
) -> Settlement | None:
    """How the sweeper settles an expired held reservation, given the decision that stands in
    the swept shard, the order's status there (``None``: the order is not there) and, for an
    order not there, the shard its tombstone there names (``None``: it has none); ``None``:
    left held.

    Moved (the shard answered so, or the order is not there and its tombstone is, whatever
    decision the shard still keeps): the order lives on in another shard, where the decision
    moved with it; its reservation is settled there once the catalog names that shard.
    Abandoned: the order can no longer be created, so its units go back. Created: the order
    was committed with that decision; its units stay with it, or go back if it was cancelled
    or, removed by hand since, is gone.
    """
    if decision is Decision.MOVED or (order_status is None and moved_to is not None):
        return None
    if decision is Decision.ABANDONED:
        return Settlement.RELEASE
    if order_status is None or order_status in RESTOCKING_STATUSES:
        return Settlement.RETURN
    return Settlement.COMMIT


def released_after_abandoning(decision: Decision) -> bool:
    """Whether a writer that gave up on its order may release the reservation, given the
    decision that stands after it recorded ``abandoned``: not when a concurrent attempt with
    the same reservation created the order first, nor when the order, created, has moved to
    another shard since."""
    return decision is Decision.ABANDONED
