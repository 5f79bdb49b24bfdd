"""What a reconciliation reports when the saga moved on while it looked, and the lock wait it
asks PostgreSQL for."""

from __future__ import annotations

import uuid
from typing import cast
from uuid import UUID

import pytest

from gateway.sharding.postgres_saga_storage import lock_timeout_setting
from gateway.sharding.reconcile import Break, Repair, after_return, reconcile
from gateway.sharding.reservations import ReservationStatus, Settlement
from gateway.sharding.saga_storage import CatalogStorage, ShardStorage
from gateway.write_path.order_status import OrderStatus


class OneCommittedReservation:
    """A catalog with one committed reservation whose return finds it ``settles`` or not
    (a cancellation that returned its units first leaves nothing to return)."""

    def __init__(self, order_id: UUID, settles: bool) -> None:
        self.order_id = order_id
        self.settles = settles
        self.settled: list[tuple[UUID, Settlement]] = []

    async def committed_page(self, after: UUID | None, limit: int) -> list[tuple[UUID, str]]:
        return [] if after is not None else [(self.order_id, "alpha")]

    async def settle(self, order_id: UUID, settlement: Settlement) -> bool:
        self.settled.append((order_id, settlement))
        return self.settles


class CancelledOrders:
    """A shard whose orders are all cancelled and none live."""

    async def live_orders_page(
        self, after: UUID | None, limit: int
    ) -> list[tuple[UUID, OrderStatus]]:
        return []

    async def order_statuses(self, order_ids: list[UUID]) -> dict[UUID, OrderStatus]:
        return dict.fromkeys(order_ids, OrderStatus.CANCELLED)


async def reconciled(settles: bool) -> tuple[list[Break], OneCommittedReservation]:
    order_id = uuid.uuid4()
    catalog = OneCommittedReservation(order_id, settles)
    shards = {"alpha": cast(ShardStorage, CancelledOrders())}
    result = await reconcile(cast(CatalogStorage, catalog), shards)
    return result.breaks, catalog


async def test_a_return_that_moved_the_units_is_a_repaired_break() -> None:
    breaks, catalog = await reconciled(settles=True)

    assert catalog.settled == [(catalog.order_id, Settlement.RETURN)]
    assert [(b.order_id, b.repair, b.repaired) for b in breaks] == [
        (catalog.order_id, Repair.RETURN, True)
    ]


async def test_a_reservation_returned_meanwhile_by_a_cancellation_is_no_break() -> None:
    breaks, catalog = await reconciled(settles=False)

    assert catalog.settled == [(catalog.order_id, Settlement.RETURN)]
    assert breaks == []


def test_a_break_is_repaired_only_by_a_return_that_moved_units() -> None:
    found = Break(
        uuid.uuid4(),
        "alpha",
        ReservationStatus.COMMITTED,
        OrderStatus.CANCELLED,
        Repair.RETURN,
        repaired=False,
    )

    repaired = after_return(found, returned=True)

    assert repaired is not None and repaired.repaired and repaired.order_id == found.order_id
    assert after_return(found, returned=False) is None


@pytest.mark.parametrize(
    ("seconds", "setting"),
    [(2.5, "2500ms"), (0.001, "1ms"), (0.0004, "1ms"), (1e-9, "1ms"), (0.0016, "2ms")],
)
def test_a_lock_wait_is_at_least_one_millisecond_since_zero_means_no_limit(
    seconds: float, setting: str
) -> None:
    assert lock_timeout_setting(seconds) == setting
