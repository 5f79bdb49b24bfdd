"""``fanout shards rebalance`` after a third shard is added, and ``fanout shards drain``,
against the real PostgreSQL servers, while orders keep being placed and moved on: the moves the
plan counted are made, at a measured rate, and afterwards every order resolves, nothing is
split and the stock invariant holds."""

from __future__ import annotations

import asyncio
import random

from gateway import Customer, Gateway, Order, Product
from support.sharding import SHARD_SERVERS, ShardedDatabases, connect_sharded, sharded_databases
from support.shop import Shop
from tests.acceptance.test_shard_moves import place, step
from tests.acceptance.test_sharding import assert_units_conserved
from tests.acceptance.test_sharding_cli import as_json, fanout

THREE = {**SHARD_SERVERS, "gamma": SHARD_SERVERS["alpha"]}
CUSTOMERS = 36
STOCK = 10_000


async def keep_writing(
    gateway: Gateway,
    customers: list[Customer],
    product: Product,
    orders: list[Order],
    done: asyncio.Event,
    seed: int,
) -> int:
    """Place orders for random existing customers and move orders on until ``done``; how many
    operations were made."""
    rng = random.Random(seed)
    shop = Shop(gateway)
    made = 0
    while not done.is_set():
        if rng.random() < 0.4:
            orders.append(await place(gateway, shop, rng.choice(customers), product))
        else:
            await step(gateway, rng.choice(orders).id, rng)
        made += 1
    return made


async def every_order_resolves(gateway: Gateway, orders: list[Order]) -> None:
    for order in orders:
        found = await gateway.get_order(order.id)
        history = await gateway.order_events(order.id)
        assert [event.version for event in history] == list(range(1, found.version + 1))


async def test_a_rebalance_after_adding_a_shard_then_a_drain_of_it_under_load() -> None:
    async with sharded_databases(shard_servers=THREE) as three:
        two = ShardedDatabases(
            three.catalog, {n: u for n, u in three.shards.items() if n in SHARD_SERVERS}
        )
        async with await connect_sharded(two) as before:
            shop = Shop(before)
            product = await shop.product(stock=STOCK)
            customers = [await shop.customer() for _ in range(CUSTOMERS)]
            orders = [await place(before, shop, customer, product) for customer in customers]
        plan = as_json(await asyncio.to_thread(fanout, three, "shards", "plan", "--json"))
        assert {(m["from"], m["to"]) for m in plan["moves"]} <= {
            ("alpha", "gamma"),
            ("beta", "gamma"),
        }
        assert CUSTOMERS // 6 <= plan["moving"] <= CUSTOMERS // 2  # about a third

        async with await connect_sharded(three) as gateway:
            done = asyncio.Event()
            writers = [
                asyncio.create_task(keep_writing(gateway, customers, product, orders, done, seed))
                for seed in range(3)
            ]
            try:
                ran = await asyncio.to_thread(
                    fanout, three, "shards", "rebalance", "--rate", "20", "--json"
                )
            finally:
                done.set()
                made = sum(await asyncio.gather(*writers))
            rebalanced = as_json(ran)
            progress = rebalanced["progress"]
            assert progress["moved"] == plan["moving"] and progress["failed"] == []
            assert progress["customers_per_second"] > 0 and progress["rows"] > 0
            assert made > 0
            print(
                f"\nrebalance: {progress['moved']} customers, {progress['rows']} rows in "
                f"{progress['seconds']} s ({progress['customers_per_second']} customers/s, "
                f"{progress['rows_per_second']} rows/s) while {made} writes ran"
            )
            replanned = as_json(await asyncio.to_thread(fanout, three, "shards", "plan", "--json"))
            assert replanned["moving"] == 0
            status = as_json(await asyncio.to_thread(fanout, three, "shards", "status", "--json"))
            assert status["shards"]["gamma"]["customers"] == plan["moving"]
            await every_order_resolves(gateway, orders)
            await assert_units_conserved(gateway, {product.id: STOCK})

            drained = await asyncio.to_thread(fanout, three, "shards", "drain", "gamma", "--json")
            report = as_json(drained)
            assert report["left"] == {"shard": "gamma", "customers": 0}
            assert report["progress"]["moved"] == plan["moving"]
            await every_order_resolves(gateway, orders)
            await assert_units_conserved(gateway, {product.id: STOCK})
            reconciled = await gateway.sharding.reconcile(repair=False)
            assert reconciled.breaks == []


async def test_a_dry_run_moves_nothing_and_an_unknown_shard_is_refused() -> None:
    async with sharded_databases() as databases, await connect_sharded(databases) as gateway:
        shop = Shop(gateway)
        customer = await shop.customer()
        home = await gateway.sharding.shard_of_customer(customer.id)
        dry = as_json(
            await asyncio.to_thread(
                fanout, databases, "shards", "drain", home, "--dry-run", "--json"
            )
        )
        assert dry["planned"] == [
            {
                "customer_id": str(customer.id),
                "from": home,
                "to": "beta" if home == "alpha" else "alpha",
            }
        ]
        assert "progress" not in dry
        assert await gateway.sharding.shard_of_customer(customer.id) == home
        unknown = await asyncio.to_thread(fanout, databases, "shards", "drain", "nowhere")
        assert unknown.returncode == 2
        assert "no shard 'nowhere'" in unknown.stderr
