"""A reconciliation reads an order that moved away where its tombstones lead, and the sweeper
leaves its expired reservation held: the catalog names the new shard only at a move's last
step, and a reservation whose order is merely elsewhere is not one to give back. The sweeper
settles a reservation only while the catalog names the shard it swept."""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Sequence
from typing import cast
from uuid import UUID

from gateway.sharding.decisions import Decision
from gateway.sharding.reconcile import MAX_MOVE_HOPS, statuses_following_moves
from gateway.sharding.reservations import Settlement
from gateway.sharding.saga_storage import CatalogStorage, ShardRecords, ShardStorage
from gateway.sharding.sweeper import SweepResult, absent_orders, settle_expired
from gateway.write_path.order_status import OrderStatus


class Shard:
    """Orders that live here, and tombstones of orders that moved away."""

    def __init__(
        self, orders: dict[UUID, OrderStatus] | None = None, moved: dict[UUID, str] | None = None
    ) -> None:
        self.orders = orders or {}
        self.moved = moved or {}

    async def order_statuses(self, order_ids: Sequence[UUID]) -> dict[UUID, OrderStatus]:
        return {o: self.orders[o] for o in order_ids if o in self.orders}

    async def moved_away(self, order_ids: Sequence[UUID]) -> dict[UUID, str]:
        return {o: self.moved[o] for o in order_ids if o in self.moved}


def storages(**shards: Shard) -> dict[str, ShardStorage]:
    return {name: cast(ShardStorage, shard) for name, shard in shards.items()}


async def test_an_order_that_moved_twice_is_read_where_it_lives_now() -> None:
    here, moved, gone = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    shards = storages(
        a=Shard({here: OrderStatus.PENDING}, {moved: "b"}),
        b=Shard(moved={moved: "c"}),
        c=Shard({moved: OrderStatus.SHIPPED}),
    )
    statuses, unknown = await statuses_following_moves(shards, shards["a"], [here, moved, gone])
    assert statuses == {here: OrderStatus.PENDING, moved: OrderStatus.SHIPPED}
    assert unknown == set()  # ``gone`` left no tombstone: it is simply not there


async def test_a_tombstone_to_a_shard_not_configured_leaves_the_order_unknown() -> None:
    moved, other = uuid.uuid4(), uuid.uuid4()
    shards = storages(
        a=Shard(moved={moved: "retired", other: "b"}), b=Shard({other: OrderStatus.CONFIRMED})
    )
    statuses, unknown = await statuses_following_moves(shards, shards["a"], [moved, other])
    assert statuses == {other: OrderStatus.CONFIRMED}
    assert unknown == {moved}


async def test_a_chain_longer_than_the_hops_leaves_the_order_unknown() -> None:
    order = uuid.uuid4()
    names = [f"s{i}" for i in range(MAX_MOVE_HOPS + 2)]
    shards = storages(
        **{name: Shard(moved={order: after}) for name, after in itertools.pairwise(names)}
    )
    statuses, unknown = await statuses_following_moves(shards, shards["s0"], [order])
    assert statuses == {} and unknown == {order}


class OneExpiredReservation:
    """A catalog holding one expired reservation, which records how it was settled and for
    which shard; it names shard ``names`` (a settlement for another shard settles nothing)."""

    def __init__(self, order_id: UUID, names: str = "a") -> None:
        self.order_id = order_id
        self.names = names
        self.settled: list[Settlement] = []
        self.asked: list[str | None] = []

    async def expired(self, shard: str, limit: int) -> list[UUID]:
        return [self.order_id]

    async def settle(
        self, order_id: UUID, settlement: Settlement, shard: str | None = None
    ) -> bool:
        self.asked.append(shard)
        if shard not in (None, self.names):
            return False
        self.settled.append(settlement)
        return True


class Decided(Shard):
    """A shard on which every order was decided ``decision`` (or answers that it moved)."""

    def __init__(
        self,
        decision: Decision,
        orders: dict[UUID, OrderStatus] | None = None,
        moved: dict[UUID, str] | None = None,
    ) -> None:
        super().__init__(orders, moved)
        self.decision = decision

    async def decide(
        self, order_id: UUID, wanted: Decision, lock_wait_seconds: float | None = None
    ) -> Decision:
        return self.decision


async def swept(shard: Decided, catalog: OneExpiredReservation) -> SweepResult:
    result = SweepResult()
    await settle_expired(cast(CatalogStorage, catalog), "a", cast(ShardRecords, shard), 10, result)
    return result


async def settled_expired(shard: Decided, order_id: UUID) -> list[Settlement]:
    catalog = OneExpiredReservation(order_id)
    await swept(shard, catalog)
    return catalog.settled


async def test_the_sweeper_leaves_a_moved_orders_expired_reservation_held() -> None:
    order = uuid.uuid4()
    assert await settled_expired(Decided(Decision.CREATED, moved={order: "b"}), order) == []


async def test_the_sweeper_leaves_held_an_order_its_shard_says_moved_away() -> None:
    order = uuid.uuid4()
    assert await settled_expired(Decided(Decision.MOVED, moved={order: "b"}), order) == []


async def test_the_sweeper_leaves_held_an_abandoned_order_that_moved_away() -> None:
    """An 'abandoned' recorded on the source after a move's last step deleted the order's
    decision there says nothing of the order, which lives on where its tombstone leads."""
    order = uuid.uuid4()
    assert await settled_expired(Decided(Decision.ABANDONED, moved={order: "b"}), order) == []


async def test_the_sweeper_releases_an_abandoned_order_that_never_existed() -> None:
    order = uuid.uuid4()
    assert await settled_expired(Decided(Decision.ABANDONED), order) == [Settlement.RELEASE]


async def test_the_sweeper_returns_the_units_of_a_created_order_that_is_gone() -> None:
    order = uuid.uuid4()
    assert await settled_expired(Decided(Decision.CREATED), order) == [Settlement.RETURN]


async def test_the_sweeper_commits_an_order_that_came_back_after_moving_away() -> None:
    order = uuid.uuid4()
    shard = Decided(Decision.CREATED, {order: OrderStatus.PENDING}, {order: "b"})
    assert await settled_expired(shard, order) == [Settlement.COMMIT]


async def test_the_sweeper_settles_only_while_the_reservation_names_the_swept_shard() -> None:
    """A move's catalog step may name another shard between the sweep's listing and its
    settlement: the settlement is asked for the swept shard only, and counts nothing then."""
    order = uuid.uuid4()
    here = OneExpiredReservation(order)
    assert (await swept(Decided(Decision.ABANDONED), here)).settled[Settlement.RELEASE] == 1
    assert here.asked == ["a"]
    elsewhere = OneExpiredReservation(order, names="b")
    assert (await swept(Decided(Decision.ABANDONED), elsewhere)).total == 0
    assert elsewhere.asked == ["a"] and elsewhere.settled == []


def test_the_sweeper_reads_the_tombstones_of_every_decided_order_not_on_its_shard() -> None:
    here, created, abandoned, moved = (uuid.uuid4() for _ in range(4))
    decided = {
        here: Decision.CREATED,
        created: Decision.CREATED,
        abandoned: Decision.ABANDONED,
        moved: Decision.MOVED,
    }
    statuses = {here: OrderStatus.PENDING}
    assert absent_orders(decided, statuses) == [created, abandoned, moved]
