"""The saga's sweeper racing a customer's move (``fanout shards move``), against three real
PostgreSQL servers: the catalog and the shards ``alpha`` and ``beta``.

Each test builds one interleaving of a sweep with a move, with the product's own code on both
sides: the move runs to its end at a chosen point of the sweep. A sweep never gives back the
units of an order that lives on, whichever step of the move it sees: what it listed for the
source is left held and settled on the target once the catalog names it.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest

from gateway import Gateway, OrderStatus
from gateway.sharding import move_records, sweeper
from gateway.sharding.move_rules import MoveState
from gateway.sharding.mover import MoveStep
from gateway.sharding.postgres_saga_storage import PostgresCatalog, PostgresShardRecords
from gateway.sharding.reservations import Settlement
from gateway.sharding.saga_storage import ShardRecords
from support.sharding import ShardedDatabases, connect_sharded
from support.shop import Shop
from tests.acceptance.test_sharding import assert_units_conserved, reservation


@pytest.fixture(scope="module")
async def gateway(sharded: ShardedDatabases) -> AsyncIterator[Gateway]:
    async with await connect_sharded(sharded) as connected:
        yield connected


def other(gateway: Gateway, shard: str) -> str:
    return next(name for name in gateway.sharding.shards if name != shard)


def shard_records(gateway: Gateway) -> dict[str, ShardRecords]:
    return {name: PostgresShardRecords(pool) for name, pool in gateway.sharding.shards.items()}


async def creator_died_before_the_catalog_step(gateway: Gateway, order_id: uuid.UUID) -> None:
    """Stands in for a placement whose process died after creating the order in its shard
    (with the decision ``created``) and before committing its units in the catalog, once the
    reservation expired: the reservation is held and due."""
    await gateway.pool.execute(
        "UPDATE inventory_reservations SET status = 'held', expires_at = now() WHERE order_id = $1",
        order_id,
    )


async def decisions_on(gateway: Gateway, shard: str, order_id: uuid.UUID) -> list[str]:
    rows = await gateway.sharding.shards[shard].fetch(
        "SELECT decision FROM reservation_decisions WHERE order_id = $1", order_id
    )
    return [row["decision"] for row in rows]


async def reservation_shard(gateway: Gateway, order_id: uuid.UUID) -> str:
    shard: str = await gateway.pool.fetchval(
        "SELECT shard FROM inventory_reservations WHERE order_id = $1", order_id
    )
    return shard


async def test_a_sweep_that_listed_a_reservation_before_its_move_leaves_the_order_its_units(
    gateway: Gateway, shop: Shop
) -> None:
    """1. the sweep lists the source's expired reservations: the order's is one of them;
    2. the customer's move runs to its end: the source commits, the catalog names the target,
       the source forgets the moved orders' decisions;
    3. the sweep asks the source to decide ``abandoned``: the source holds the order's
       tombstone and no decision any more; it records nothing and answers that the order
       moved, and the catalog's reservation names another shard than the one swept anyway.
    The reservation stays held; the next sweep commits it on the target."""
    customer, product = await shop.customer(), await shop.product(stock=10)
    order = await gateway.place_order(shop.order(customer, (product, 1)))
    source = await gateway.sharding.shard_of_customer(customer.id)
    target = other(gateway, source)
    await creator_died_before_the_catalog_step(gateway, order.id)

    class CatalogRacingAMove(PostgresCatalog):
        async def expired(self, shard: str, limit: int) -> list[uuid.UUID]:
            due = await super().expired(shard, limit)
            if shard == source and order.id in due:
                moved = await gateway.sharding.move_customer(customer.id, target)
                assert moved.move.state is MoveState.DONE, moved.move.last_error
            return due

    raced = await sweeper.sweep_storages(CatalogRacingAMove(gateway.pool), shard_records(gateway))

    assert (await gateway.get_order(order.id)).status is OrderStatus.PENDING
    assert await reservation(gateway, order.id) in ("held", "committed"), (
        "a live order's reservation was released by a sweep racing its move"
    )
    assert raced.settled[Settlement.RELEASE] == 0
    assert await decisions_on(gateway, source, order.id) == []  # no 'abandoned' recorded
    assert await decisions_on(gateway, target, order.id) == ["created"]

    await gateway.sharding.sweep()
    assert await reservation(gateway, order.id) == "committed"
    assert await reservation_shard(gateway, order.id) == target
    await assert_units_conserved(gateway, {product.id: 10})


async def test_a_sweep_whose_settlement_follows_the_catalog_step_settles_nothing(
    gateway: Gateway, shop: Shop
) -> None:
    """The sweep decided on the source (``created`` stands, the order is there), then the move
    runs to its end before the sweep settles: the catalog's reservation now names the target,
    so the settlement the source's view led to changes nothing and counts nothing; a sweep of
    the target settles it."""
    customer, product = await shop.customer(), await shop.product(stock=10)
    order = await gateway.place_order(shop.order(customer, (product, 2)))
    source = await gateway.sharding.shard_of_customer(customer.id)
    target = other(gateway, source)
    await creator_died_before_the_catalog_step(gateway, order.id)
    moves: list[MoveState] = []
    answers: list[tuple[str | None, Settlement, bool]] = []

    class CatalogRacingAMove(PostgresCatalog):
        async def settle(
            self, order_id: uuid.UUID, settlement: Settlement, shard: str | None = None
        ) -> bool:
            if order_id != order.id:
                return await super().settle(order_id, settlement, shard)
            if not moves:
                moved = await gateway.sharding.move_customer(customer.id, target)
                moves.append(moved.move.state)
            settled = await super().settle(order_id, settlement, shard)
            answers.append((shard, settlement, settled))
            return settled

    raced = await sweeper.sweep_storages(CatalogRacingAMove(gateway.pool), shard_records(gateway))

    assert moves == [MoveState.DONE]
    assert answers[0] == (source, Settlement.COMMIT, False)
    assert raced.total == (1 if answers[1:] == [(target, Settlement.COMMIT, True)] else 0)
    assert await reservation_shard(gateway, order.id) == target
    await gateway.sharding.sweep()
    assert await reservation(gateway, order.id) == "committed"
    await assert_units_conserved(gateway, {product.id: 10})


class Crash(Exception):
    """Stands in for the moving process dying at a step."""


async def test_a_sweep_between_a_moves_source_commit_and_its_catalog_step_leaves_it_held(
    gateway: Gateway, shop: Shop
) -> None:
    """A move interrupted after the source's commit: the catalog still names the source, which
    holds the order's tombstone (and still its decision). A sweep leaves the reservation held
    and records nothing on the source; once the move is resumed, a sweep commits it on the
    target."""
    customer, product = await shop.customer(), await shop.product(stock=10)
    order = await gateway.place_order(shop.order(customer, (product, 1)))
    source = await gateway.sharding.shard_of_customer(customer.id)
    target = other(gateway, source)
    await creator_died_before_the_catalog_step(gateway, order.id)

    async def crash(step: MoveStep) -> None:
        if step is MoveStep.SOURCE_COMMITTED:
            raise Crash(step.value)

    with pytest.raises(Crash):
        await gateway.sharding.mover(crash).move(customer.id, target)
    assert await reservation_shard(gateway, order.id) == source

    swept = await gateway.sharding.sweep()
    assert swept.total == 0
    assert await reservation(gateway, order.id) == "held"
    assert await decisions_on(gateway, source, order.id) == ["created"]

    unfinished = await move_records.unfinished_of(gateway.pool, customer.id)
    assert unfinished is not None
    assert (await gateway.sharding.mover().resume(unfinished)).state is MoveState.DONE
    assert await reservation_shard(gateway, order.id) == target
    assert await decisions_on(gateway, source, order.id) == []
    assert (await gateway.sharding.sweep()).settled[Settlement.COMMIT] == 1
    assert await reservation(gateway, order.id) == "committed"
    await assert_units_conserved(gateway, {product.id: 10})
