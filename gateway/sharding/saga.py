"""The decisions of sharded mode's place-order saga, as small functions of what is known."""

from __future__ import annotations

import asyncio

from gateway.postgres.database import is_unavailability
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


def settlement_of_expired(order_status: OrderStatus | None) -> Settlement:
    """How the sweeper settles an expired held reservation, given its order's status in the
    shard (``None``: the order does not exist)."""
    if order_status is None:
        return Settlement.RELEASE
    if order_status in RESTOCKING_STATUSES:
        return Settlement.RETURN
    return Settlement.COMMIT
