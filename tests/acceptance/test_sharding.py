"""Sharded mode against three real PostgreSQL servers: the catalog and two shards."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from gateway import Gateway, NotFound
from gateway.sharding.gateway import ShardedGateway
from gateway.sharding.order_ids import shard_tag, tag_of
from tests.acceptance.sharding_support import ShardedDatabases, sharded_databases
from tests.acceptance.shop import Shop


@pytest.fixture(scope="module")
async def sharded() -> AsyncIterator[ShardedDatabases]:
    async with sharded_databases() as found:
        yield found


@pytest.fixture(scope="module")
async def gateway(sharded: ShardedDatabases) -> AsyncIterator[ShardedGateway]:
    connected = await Gateway.connect(sharded.settings())
    assert isinstance(connected, ShardedGateway)
    async with connected:
        yield connected


@pytest.fixture
def shop(gateway: ShardedGateway) -> Shop:
    return Shop(gateway)


async def test_customers_and_their_orders_live_on_the_shard_the_directory_names(
    gateway: ShardedGateway, shop: Shop
) -> None:
    placed = {name: 0 for name in gateway.shards}
    product = await shop.product(stock=100)
    for _ in range(12):
        customer = await shop.customer()
        shard = await gateway.shard_of_customer(customer.id)
        placed[shard] += 1
        order = await gateway.place_order(shop.order(customer, (product, 1)))
        assert tag_of(order.id) == shard_tag(shard)
        for name, pool in gateway.shards.items():
            here = await pool.fetchval("SELECT count(*) FROM orders WHERE id = $1", order.id)
            assert here == (1 if name == shard else 0)
        assert await gateway.get_order(order.id) == order
        page = await gateway.customer_orders(customer.id)
        assert [o.id for o in page.orders] == [order.id]
    assert all(count > 0 for count in placed.values()), placed
    assert await shop.stock(product) == 88


async def test_an_order_id_of_no_shard_is_not_found(gateway: ShardedGateway) -> None:
    import uuid

    foreign = uuid.UUID(int=uuid.uuid4().int & ~(0xFFFF << 112))
    if any(tag_of(foreign) == shard_tag(name) for name in gateway.shards):
        foreign = uuid.UUID(int=foreign.int | (0xFFFF << 112))
    with pytest.raises(NotFound) as raised:
        await gateway.get_order(foreign)
    assert raised.value.field == "order_id"
