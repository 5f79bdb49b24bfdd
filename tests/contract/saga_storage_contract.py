"""The rules of the saga's storage (:mod:`gateway.sharding.saga_storage`), one test each, that
every storage must pass: the in-memory one the simulation drives, and PostgreSQL's.

A concrete test class subclasses :class:`SagaStorageContract` and provides a ``harness``
fixture (see :mod:`tests.contract.saga_harnesses`).
"""

from __future__ import annotations

import uuid

import pytest

from gateway.errors import IdempotencyConflict, InsufficientInventory, ReservationLapsed
from gateway.order_ids import new_order_id, shard_tag
from gateway.sharding.decisions import Decision
from gateway.sharding.reservations import (
    Reservation,
    ReservationKey,
    ReservationStatus,
    Settlement,
)
from gateway.write_path.models import PlaceOrderRequest
from gateway.write_path.order_status import OrderStatus
from tests.contract.saga_harnesses import Buyer, SagaHarness, claim

SECONDS = 600.0


def key(fingerprint: str = "request-1") -> ReservationKey:
    """A reservation key of this test's own."""
    return ReservationKey(f"k-{uuid.uuid4().hex[:8]}", fingerprint)


async def reserve(
    harness: SagaHarness,
    buyer: Buyer,
    request: PlaceOrderRequest,
    reservation_key: ReservationKey | None = None,
) -> Reservation:
    order_id = new_order_id(shard_tag(buyer.shard))
    return await harness.catalog.reserve(order_id, buyer.shard, request, reservation_key, SECONDS)


async def placed(
    harness: SagaHarness, buyer: Buyer, product: uuid.UUID, quantity: int
) -> uuid.UUID:
    """An order created and its units committed, as the saga leaves it."""
    request = buyer.order((product, quantity))
    reservation = await reserve(harness, buyer, request)
    shard = harness.shard(buyer.shard)
    await shard.create_order(reservation.order_id, request, None, reservation.products)
    assert await harness.catalog.settle(reservation.order_id, Settlement.COMMIT)
    return reservation.order_id


class SagaStorageContract:
    """The saga storage's rules; subclasses provide ``harness``."""

    # The catalog's reservations --------------------------------------------------------------

    async def test_reserve_takes_the_units_and_holds_them(self, harness: SagaHarness) -> None:
        product, buyer = await harness.product(10), await harness.buyer("alpha")
        reservation = await reserve(harness, buyer, buyer.order((product, 3)))
        assert not reservation.reused
        assert set(reservation.products) == {product}
        assert await harness.catalog.status_of(reservation.order_id) is ReservationStatus.HELD
        assert await harness.stock(product) == 7

    async def test_reserve_refuses_what_the_stock_lacks_and_takes_nothing(
        self, harness: SagaHarness
    ) -> None:
        product, buyer = await harness.product(2), await harness.buyer("alpha")
        with pytest.raises(InsufficientInventory):
            await reserve(harness, buyer, buyer.order((product, 3)))
        assert await harness.stock(product) == 2

    async def test_a_held_key_gives_the_same_reservation_to_a_retry(
        self, harness: SagaHarness
    ) -> None:
        product, buyer = await harness.product(10), await harness.buyer("alpha")
        kept = key()
        first = await reserve(harness, buyer, buyer.order((product, 3)), kept)
        again = await reserve(harness, buyer, buyer.order((product, 3)), kept)
        assert again.reused and again.order_id == first.order_id
        assert await harness.stock(product) == 7

    async def test_a_held_key_with_another_request_is_a_conflict(
        self, harness: SagaHarness
    ) -> None:
        product, buyer = await harness.product(10), await harness.buyer("alpha")
        kept = key()
        await reserve(harness, buyer, buyer.order((product, 3)), kept)
        with pytest.raises(IdempotencyConflict):
            await reserve(harness, buyer, buyer.order((product, 1)), ReservationKey(kept.key, "x"))
        assert await harness.stock(product) == 7

    async def test_held_keys_are_kept_per_shard(self, harness: SagaHarness) -> None:
        product = await harness.product(10)
        on_alpha, on_beta = await harness.buyer("alpha"), await harness.buyer("beta")
        kept = key()
        first = await reserve(harness, on_alpha, on_alpha.order((product, 1)), kept)
        other = await reserve(
            harness, on_beta, on_beta.order((product, 2)), ReservationKey(kept.key, "other")
        )
        assert not other.reused and other.order_id != first.order_id
        assert await harness.stock(product) == 7

    async def test_a_settled_key_no_longer_gives_its_reservation(
        self, harness: SagaHarness
    ) -> None:
        product, buyer = await harness.product(10), await harness.buyer("alpha")
        kept = key()
        first = await reserve(harness, buyer, buyer.order((product, 3)), kept)
        assert await harness.catalog.settle(first.order_id, Settlement.RELEASE)
        again = await reserve(harness, buyer, buyer.order((product, 3)), kept)
        assert not again.reused and again.order_id != first.order_id

    async def test_commit_settles_only_a_held_reservation(self, harness: SagaHarness) -> None:
        product, buyer = await harness.product(10), await harness.buyer("alpha")
        reservation = await reserve(harness, buyer, buyer.order((product, 3)))
        assert await harness.catalog.settle(reservation.order_id, Settlement.COMMIT)
        assert not await harness.catalog.settle(reservation.order_id, Settlement.COMMIT)
        assert not await harness.catalog.settle(reservation.order_id, Settlement.RELEASE)
        assert await harness.catalog.status_of(reservation.order_id) is ReservationStatus.COMMITTED
        assert await harness.stock(product) == 7

    async def test_release_gives_a_held_reservations_units_back_once(
        self, harness: SagaHarness
    ) -> None:
        product, buyer = await harness.product(10), await harness.buyer("alpha")
        reservation = await reserve(harness, buyer, buyer.order((product, 3)))
        assert await harness.catalog.settle(reservation.order_id, Settlement.RELEASE)
        assert not await harness.catalog.settle(reservation.order_id, Settlement.RELEASE)
        assert not await harness.catalog.settle(reservation.order_id, Settlement.COMMIT)
        assert await harness.catalog.status_of(reservation.order_id) is ReservationStatus.RELEASED
        assert await harness.stock(product) == 10

    async def test_return_settles_a_committed_or_held_reservation_once(
        self, harness: SagaHarness
    ) -> None:
        product, buyer = await harness.product(10), await harness.buyer("alpha")
        committed = await reserve(harness, buyer, buyer.order((product, 3)))
        held = await reserve(harness, buyer, buyer.order((product, 2)))
        assert await harness.catalog.settle(committed.order_id, Settlement.COMMIT)
        assert await harness.catalog.settle(committed.order_id, Settlement.RETURN)
        assert await harness.catalog.settle(held.order_id, Settlement.RETURN)
        assert not await harness.catalog.settle(committed.order_id, Settlement.RETURN)
        assert await harness.stock(product) == 10

    async def test_a_settlement_for_a_shard_settles_only_a_reservation_naming_it(
        self, harness: SagaHarness
    ) -> None:
        product, buyer = await harness.product(10), await harness.buyer("alpha")
        held = await reserve(harness, buyer, buyer.order((product, 3)))
        committed = await reserve(harness, buyer, buyer.order((product, 2)))
        assert await harness.catalog.settle(committed.order_id, Settlement.COMMIT, "alpha")
        for settlement in Settlement:
            assert not await harness.catalog.settle(held.order_id, settlement, "beta")
        assert not await harness.catalog.settle(committed.order_id, Settlement.RETURN, "beta")
        assert await harness.catalog.status_of(held.order_id) is ReservationStatus.HELD
        assert await harness.catalog.status_of(committed.order_id) is ReservationStatus.COMMITTED
        assert await harness.stock(product) == 5
        assert await harness.catalog.settle(held.order_id, Settlement.RELEASE, "alpha")
        assert await harness.stock(product) == 8

    async def test_settling_no_reservation_changes_nothing(self, harness: SagaHarness) -> None:
        for settlement in Settlement:
            assert not await harness.catalog.settle(uuid.uuid4(), settlement)
        assert await harness.catalog.status_of(uuid.uuid4()) is None

    async def test_retake_commits_a_released_reservation_when_the_stock_has_its_units(
        self, harness: SagaHarness
    ) -> None:
        product, buyer = await harness.product(4), await harness.buyer("alpha")
        reservation = await reserve(harness, buyer, buyer.order((product, 3)))
        assert await harness.catalog.settle(reservation.order_id, Settlement.RELEASE)
        assert await harness.catalog.retake(reservation.order_id)
        assert await harness.catalog.status_of(reservation.order_id) is ReservationStatus.COMMITTED
        assert await harness.stock(product) == 1
        assert not await harness.catalog.retake(reservation.order_id)

    async def test_retake_needs_the_stock(self, harness: SagaHarness) -> None:
        product, buyer = await harness.product(4), await harness.buyer("alpha")
        reservation = await reserve(harness, buyer, buyer.order((product, 3)))
        assert await harness.catalog.settle(reservation.order_id, Settlement.RELEASE)
        await reserve(harness, buyer, buyer.order((product, 2)))
        assert not await harness.catalog.retake(reservation.order_id)
        assert await harness.catalog.status_of(reservation.order_id) is ReservationStatus.RELEASED
        assert await harness.stock(product) == 2

    async def test_expired_lists_a_shards_held_reservations_past_expiry_oldest_first(
        self, harness: SagaHarness
    ) -> None:
        product = await harness.product(20)
        on_alpha, on_beta = await harness.buyer("alpha"), await harness.buyer("beta")
        older, newer, fresh, settled = [
            await reserve(harness, on_alpha, on_alpha.order((product, 1))) for _ in range(4)
        ]
        elsewhere = await reserve(harness, on_beta, on_beta.order((product, 1)))
        await harness.expire(newer.order_id, 1)
        await harness.expire(older.order_id, 5)
        await harness.expire(settled.order_id, 9)
        await harness.expire(elsewhere.order_id, 1)
        assert await harness.catalog.settle(settled.order_id, Settlement.COMMIT)
        assert await harness.catalog.expired("alpha", 10) == [older.order_id, newer.order_id]
        assert await harness.catalog.expired("alpha", 1) == [older.order_id]
        assert fresh.order_id not in await harness.catalog.expired("alpha", 10)
        assert await harness.catalog.shards_with_expired() == {"alpha", "beta"}

    async def test_committed_page_lists_committed_reservations_by_id(
        self, harness: SagaHarness
    ) -> None:
        product, buyer = await harness.product(10), await harness.buyer("beta")
        ids = [await placed(harness, buyer, product, 1) for _ in range(3)]
        held = await reserve(harness, buyer, buyer.order((product, 1)))
        listed: list[tuple[uuid.UUID, str]] = []
        after = None
        while page := await harness.catalog.committed_page(after, 2):
            listed += page
            after = page[-1][0]
        assert [order_id for order_id, _ in listed] == sorted(order_id for order_id, _ in listed)
        assert {(order_id, "beta") for order_id in ids} <= set(listed)
        assert held.order_id not in {order_id for order_id, _ in listed}

    async def test_one_sweep_at_a_time(self, harness: SagaHarness) -> None:
        async with harness.catalog.sweeping() as first, harness.catalog.sweeping() as second:
            assert (first, second) == (True, False)
        async with harness.catalog.sweeping() as later:
            assert later

    # The shard's orders and decisions --------------------------------------------------------

    async def test_the_first_decision_stands(self, harness: SagaHarness) -> None:
        shard = harness.shard("alpha")
        created, abandoned = uuid.uuid4(), uuid.uuid4()
        assert await shard.decide(created, Decision.CREATED) is Decision.CREATED
        assert await shard.decide(created, Decision.ABANDONED) is Decision.CREATED
        assert await shard.decide(abandoned, Decision.ABANDONED, 1.0) is Decision.ABANDONED
        assert await shard.decide(abandoned, Decision.CREATED) is Decision.ABANDONED

    async def test_create_order_records_the_decision_created(self, harness: SagaHarness) -> None:
        product, buyer = await harness.product(10), await harness.buyer("alpha")
        request = buyer.order((product, 2))
        reservation = await reserve(harness, buyer, request)
        shard = harness.shard("alpha")
        made = await shard.create_order(reservation.order_id, request, None, reservation.products)
        assert not made.replayed and made.order.id == reservation.order_id
        assert made.order.status is OrderStatus.PENDING
        assert await shard.decide(reservation.order_id, Decision.ABANDONED) is Decision.CREATED
        assert await shard.order_statuses([reservation.order_id]) == {
            reservation.order_id: OrderStatus.PENDING
        }
        # An order that lives here has not moved away, nor has an order that never existed.
        assert await shard.moved_away([reservation.order_id, uuid.uuid4()]) == {}

    async def test_a_shard_decides_nothing_about_an_order_that_moved_away(
        self, harness: SagaHarness
    ) -> None:
        product, buyer = await harness.product(10), await harness.buyer("alpha")
        order_id = await placed(harness, buyer, product, 1)
        alpha, beta = harness.shard("alpha"), harness.shard("beta")
        moved = await harness.move(buyer, "beta")
        # The source keeps the order's tombstone: it records nothing (an 'abandoned' would
        # give back the units of an order that lives on) and answers that the order moved.
        assert await alpha.decide(order_id, Decision.ABANDONED, 1.0) is Decision.MOVED
        assert await alpha.decide(order_id, Decision.CREATED) is Decision.MOVED
        assert await alpha.moved_away([order_id]) == {order_id: "beta"}
        assert await beta.decide(order_id, Decision.ABANDONED) is Decision.CREATED
        assert await beta.moved_away([order_id]) == {}
        # The catalog names the target: a settlement for the source settles nothing.
        assert not await harness.catalog.settle(order_id, Settlement.RETURN, "alpha")
        assert await harness.catalog.status_of(order_id) is ReservationStatus.COMMITTED
        # Back on the source, the order's decision is the one that moved with it.
        await harness.move(moved, "alpha")
        assert await alpha.decide(order_id, Decision.ABANDONED) is Decision.CREATED
        assert await beta.decide(order_id, Decision.ABANDONED) is Decision.MOVED
        assert await alpha.order_statuses([order_id]) == {order_id: OrderStatus.PENDING}

    async def test_an_abandoned_order_cannot_be_created(self, harness: SagaHarness) -> None:
        product, buyer = await harness.product(10), await harness.buyer("alpha")
        request = buyer.order((product, 2))
        reservation = await reserve(harness, buyer, request)
        shard = harness.shard("alpha")
        assert await shard.decide(reservation.order_id, Decision.ABANDONED) is Decision.ABANDONED
        with pytest.raises(ReservationLapsed):
            await shard.create_order(reservation.order_id, request, None, reservation.products)
        assert await shard.order_statuses([reservation.order_id]) == {}

    async def test_a_kept_key_replays_its_order(self, harness: SagaHarness) -> None:
        product, buyer = await harness.product(10), await harness.buyer("alpha")
        request, kept = buyer.order((product, 2)), claim(f"k-{uuid.uuid4().hex[:8]}")
        shard = harness.shard("alpha")
        first = await reserve(harness, buyer, request)
        made = await shard.create_order(first.order_id, request, kept, first.products)
        second = await reserve(harness, buyer, request)
        again = await shard.create_order(second.order_id, request, kept, second.products)
        assert again.replayed and again.order.id == made.order.id
        assert await shard.order_statuses([second.order_id]) == {}

    async def test_a_kept_key_with_another_request_is_a_conflict(
        self, harness: SagaHarness
    ) -> None:
        product, buyer = await harness.product(10), await harness.buyer("alpha")
        request, kept = buyer.order((product, 2)), claim(f"k-{uuid.uuid4().hex[:8]}")
        shard = harness.shard("alpha")
        first = await reserve(harness, buyer, request)
        await shard.create_order(first.order_id, request, kept, first.products)
        other = buyer.order((product, 1))
        second = await reserve(harness, buyer, other)
        with pytest.raises(IdempotencyConflict):
            await shard.create_order(
                second.order_id, other, claim(kept.key, "request-2"), second.products
            )

    async def test_cancelling_an_order_queues_its_return(self, harness: SagaHarness) -> None:
        product, buyer = await harness.product(10), await harness.buyer("alpha")
        order_id = await placed(harness, buyer, product, 2)
        shard = harness.shard("alpha")
        assert not await shard.cancel_order(order_id, expected_version=99)
        assert order_id not in await shard.queued_returns(1000)
        assert await shard.cancel_order(order_id)
        assert order_id in await shard.queued_returns(1000)
        assert await shard.order_statuses([order_id]) == {order_id: OrderStatus.CANCELLED}
        assert not await shard.cancel_order(order_id)
        await shard.forget_returns([order_id])
        assert order_id not in await shard.queued_returns(1000)

    async def test_live_orders_leave_out_cancelled_ones(self, harness: SagaHarness) -> None:
        product, buyer = await harness.product(10), await harness.buyer("beta")
        live, cancelled = [await placed(harness, buyer, product, 1) for _ in range(2)]
        shard = harness.shard("beta")
        assert await shard.cancel_order(cancelled)
        listed: list[tuple[uuid.UUID, OrderStatus]] = []
        after = None
        while page := await shard.live_orders_page(after, 1):
            listed += page
            after = page[-1][0]
        assert (live, OrderStatus.PENDING) in listed
        assert cancelled not in {order_id for order_id, _ in listed}

    async def test_a_locked_order_tells_its_status_and_version(self, harness: SagaHarness) -> None:
        product, buyer = await harness.product(10), await harness.buyer("alpha")
        order_id = await placed(harness, buyer, product, 1)
        shard = harness.shard("alpha")
        async with shard.locked_order(order_id) as (status, version):
            assert status is OrderStatus.PENDING
        assert await shard.cancel_order(order_id, expected_version=version)
        async with shard.locked_order(uuid.uuid4()) as missing:
            assert missing == (None, 0)

    async def test_a_session_is_the_same_shard(self, harness: SagaHarness) -> None:
        shard = harness.shard("alpha")
        await shard.answers(5.0)
        order_id = uuid.uuid4()
        async with shard.session(5.0) as session:
            assert await session.decide(order_id, Decision.ABANDONED, 2.5) is Decision.ABANDONED
        assert await shard.decide(order_id, Decision.CREATED) is Decision.ABANDONED
