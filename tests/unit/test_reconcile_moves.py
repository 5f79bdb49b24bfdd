"""A reconciliation reads an order that moved away where its tombstones lead, and the sweeper
leaves its expired reservation held: the catalog names the new shard only at a move's last
step, and a reservation whose order is merely elsewhere is not one to give back."""

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
from gateway.sharding.sweeper import SweepResult, settle_expired
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
    """A catalog holding one expired reservation, which records how it was settled."""

    def __init__(self, order_id: UUID) -> None:
        self.order_id = order_id
        self.settled: list[Settlement] = []

    async def expired(self, shard: str, limit: int) -> list[UUID]:
        return [self.order_id]

    async def settle(self, order_id: UUID, settlement: Settlement) -> bool:
        self.settled.append(settlement)
        return True


class CreatedHere(Shard):
    """A shard on which every order was decided ``created``."""

    async def decide(
        self, order_id: UUID, wanted: Decision, lock_wait_seconds: float | None = None
    ) -> Decision:
        return Decision.CREATED


async def settled_expired(shard: CreatedHere, order_id: UUID) -> list[Settlement]:
    catalog = OneExpiredReservation(order_id)
    await settle_expired(
        cast(CatalogStorage, catalog), "a", cast(ShardRecords, shard), 10, SweepResult()
    )
    return catalog.settled


async def test_the_sweeper_leaves_a_moved_orders_expired_reservation_held() -> None:
    order = uuid.uuid4()
    assert await settled_expired(CreatedHere(moved={order: "b"}), order) == []


async def test_the_sweeper_returns_the_units_of_a_created_order_that_is_gone() -> None:
    order = uuid.uuid4()
    assert await settled_expired(CreatedHere(), order) == [Settlement.RETURN]
