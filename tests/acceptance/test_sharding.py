"""Sharded mode against three real PostgreSQL servers: the catalog on the main server and the
shards ``alpha`` and ``beta`` on ``postgres-shard-a`` and ``postgres-shard-b``.

Routing, the place-order saga with its writing process killed between steps and a shard
stopped mid-run, the sweeper, cancellation, the scatter-gather report with a shard down, and
the relay delivering every shard's events to the four real stores with no drift.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any
from urllib.parse import urlsplit

import asyncpg
import pytest

from adapters.readback import OrderSpan, ReadBack
from gateway import AlreadyExists, Gateway, NotFound, OrderStatus
from gateway.api.problems import problem_of
from gateway.configuration.settings import Settings
from gateway.errors import RequestInProgress, ReservationLapsed
from gateway.operations.verify import verify
from gateway.order_ids import shard_tag, tag_of
from gateway.postgres.advisory_locks import AdvisoryLock
from gateway.postgres.database import is_unavailability
from gateway.sharding import decisions, reservations, sweeper
from gateway.sharding.decisions import Decision
from gateway.sharding.layout import PLACE_ATTEMPTS
from gateway.sharding.reconcile import Repair
from gateway.sharding.relays import ShardedRelay
from gateway.sharding.reservations import Settlement
from gateway.sharding.status import shards_status
from gateway.write_path import orders
from support.eventually import eventually
from support.servers import start_server, stop_server
from support.sharding import (
    SHARD_SERVERS,
    ShardedDatabases,
    connect_sharded,
    sharded_databases,
)
from support.shop import REJECTED_NOTES, Shop, outbox_rejecting
from support.stores import STORES, drop_namespace, make_sink, store_settings
from tests.acceptance import saga_crash_process
from tests.relay_settings import FAST


@pytest.fixture(scope="module")
async def gateway(sharded: ShardedDatabases) -> AsyncIterator[Gateway]:
    async with await connect_sharded(sharded) as connected:
        yield connected


async def customers_on_each_shard(gateway: Gateway, shop: Shop) -> dict[str, Any]:
    """One new customer on each shard."""
    found: dict[str, Any] = {}
    while len(found) < len(gateway.sharding.shards):
        customer = await shop.customer()
        found.setdefault(await gateway.sharding.shard_of_customer(customer.id), customer)
    return found


async def reservation(gateway: Gateway, order_id: uuid.UUID) -> str | None:
    status: str | None = await gateway.pool.fetchval(
        "SELECT status FROM inventory_reservations WHERE order_id = $1", order_id
    )
    return status


async def time_passes(gateway: Gateway) -> None:
    """Stands in for postgres.reservation_seconds passing: every open reservation expires."""
    await gateway.pool.execute(
        "UPDATE inventory_reservations SET expires_at = now() WHERE status = 'held'"
    )


async def assert_units_conserved(gateway: Gateway, initial: dict[uuid.UUID, int]) -> None:
    """For every product: initial stock = inventory + units held by open reservations + units
    in orders that exist and are not cancelled; and every committed reservation has its order."""
    ids = list(initial)
    stock = {
        row["id"]: row["inventory_quantity"]
        for row in await gateway.pool.fetch(
            "SELECT id, inventory_quantity FROM products WHERE id = ANY($1)", ids
        )
    }
    held: dict[uuid.UUID, int] = dict.fromkeys(ids, 0)
    for row in await gateway.pool.fetch(
        "SELECT product_ids, quantities FROM inventory_reservations WHERE status = 'held'"
    ):
        for product_id, quantity in zip(row["product_ids"], row["quantities"], strict=True):
            if product_id in held:
                held[product_id] += quantity
    ordered: dict[uuid.UUID, int] = dict.fromkeys(ids, 0)
    existing: set[uuid.UUID] = set()
    for pool in gateway.sharding.shards.values():
        for row in await pool.fetch(
            """
            SELECT order_items.product_id, order_items.quantity, orders.id, orders.status
            FROM order_items JOIN orders ON orders.id = order_items.order_id
            WHERE order_items.product_id = ANY($1)
            """,
            ids,
        ):
            existing.add(row["id"])
            if row["status"] != "cancelled":
                ordered[row["product_id"]] += row["quantity"]
    for product_id, units in initial.items():
        accounted = stock[product_id] + held[product_id] + ordered[product_id]
        assert accounted == units, (product_id, stock[product_id], held[product_id], ordered)
    committed = {
        row["order_id"]
        for row in await gateway.pool.fetch(
            "SELECT order_id FROM inventory_reservations WHERE status = 'committed'"
            " AND product_ids && $1",
            ids,
        )
    }
    assert committed <= existing


def writer_environment(sharded: ShardedDatabases) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FANOUT_")}
    env["FANOUT_POSTGRES_URL"] = sharded.catalog
    env["FANOUT_POSTGRES_SHARDS"] = json.dumps({n: {"url": u} for n, u in sharded.shards.items()})
    env["FANOUT_ORDERS_PAYMENT_TIMEOUT_SECONDS"] = "900"
    return env


async def kill_writer_at(
    sharded: ShardedDatabases, boundary: str, request: dict[str, Any], argument: str
) -> None:
    """Run a writing process until it reaches ``boundary`` of the saga, then SIGKILL it."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        saga_crash_process.__name__,
        boundary,
        json.dumps(request),
        argument,
        env=writer_environment(sharded),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        assert process.stdout is not None
        line = await asyncio.wait_for(process.stdout.readline(), 60)
        assert line.decode().strip() == boundary, (await process.stderr.read()).decode()  # type: ignore[union-attr]
    finally:
        process.kill()
        await process.wait()


# --- routing -----------------------------------------------------------------------------


async def test_customers_and_their_orders_live_on_the_shard_the_directory_names(
    gateway: Gateway, shop: Shop
) -> None:
    placed = dict.fromkeys(gateway.sharding.shards, 0)
    product = await shop.product(stock=100)
    for _ in range(12):
        customer = await shop.customer()
        shard = await gateway.sharding.shard_of_customer(customer.id)
        placed[shard] += 1
        order = await gateway.place_order(shop.order(customer, (product, 1)))
        assert tag_of(order.id) == shard_tag(shard)
        for name, pool in gateway.sharding.shards.items():
            here = await pool.fetchval("SELECT count(*) FROM orders WHERE id = $1", order.id)
            assert here == (1 if name == shard else 0)
        assert await gateway.get_order(order.id) == order
        assert [o.id for o in (await gateway.customer_orders(customer.id)).orders] == [order.id]
        assert [e.event_type for e in await gateway.order_events(order.id)] == ["order.placed"]
    assert all(count > 0 for count in placed.values()), placed
    assert await shop.stock(product) == 88
    directory = await gateway.pool.fetchval("SELECT count(*) FROM customer_directory")
    customers = sum(
        [
            await p.fetchval("SELECT count(*) FROM customers")
            for p in gateway.sharding.shards.values()
        ]
    )
    assert directory == customers


async def test_an_order_id_that_names_no_shard_is_not_found(gateway: Gateway) -> None:
    tags = {shard_tag(name) for name in gateway.sharding.shards}
    free_tag = next(tag for tag in range(1 << 16) if tag not in tags)
    foreign = uuid.UUID(int=(free_tag << 112) | (uuid.uuid4().int & ((1 << 112) - 1)))
    with pytest.raises(NotFound) as raised:
        await gateway.get_order(foreign)
    assert raised.value.field == "order_id"


async def test_emails_are_unique_across_shards(gateway: Gateway, shop: Shop) -> None:
    first = await shop.customer()
    for _ in range(6):  # each attempt would land on a random shard
        with pytest.raises(AlreadyExists):
            await gateway.create_customer(
                {"email": first.email, "first_name": "Again", "last_name": "Again"}
            )


# --- the saga ----------------------------------------------------------------------------


async def test_an_order_the_shard_refuses_releases_its_reservation_at_once(
    gateway: Gateway, shop: Shop
) -> None:
    customer = await shop.customer()
    shard = gateway.sharding.shards[await gateway.sharding.shard_of_customer(customer.id)]
    product = await shop.product(stock=10)
    before = await shop.counts()
    async with outbox_rejecting(shard):
        with pytest.raises(asyncpg.RaiseError):
            await gateway.place_order(shop.order(customer, (product, 4), notes=REJECTED_NOTES))
    assert await shop.counts() == before
    assert await shop.stock(product) == 10
    statuses = await gateway.pool.fetch(
        "SELECT status FROM inventory_reservations WHERE $1 = ANY(product_ids)", product.id
    )
    assert [row["status"] for row in statuses] == ["released"]
    events = await gateway.pool.fetch(
        "SELECT event_type, version FROM outbox WHERE aggregate_type = 'reservation'"
        " AND payload->'items'->0->>'product_id' = $1 ORDER BY id",
        str(product.id),
    )
    assert [(e["event_type"], e["version"]) for e in events] == [
        ("inventory.reserved", 1),
        ("inventory.released", 2),
    ]


async def test_a_writer_killed_after_reserving_leaves_units_the_sweeper_releases(
    gateway: Gateway, shop: Shop, sharded: ShardedDatabases
) -> None:
    customer, product = await shop.customer(), await shop.product(stock=10)
    request = shop.order(customer, (product, 3))

    await kill_writer_at(sharded, saga_crash_process.AFTER_RESERVE, request, f"k-{uuid.uuid4()}")

    assert await shop.stock(product) == 7
    assert (await gateway.customer_orders(customer.id)).orders == []
    await assert_units_conserved(gateway, {product.id: 10})
    assert (await gateway.sharding.sweep()).total == 0  # not expired yet: it may still be created
    await time_passes(gateway)
    result = await gateway.sharding.sweep()
    assert result.settled[Settlement.RELEASE] >= 1
    assert await shop.stock(product) == 10
    await assert_units_conserved(gateway, {product.id: 10})


async def test_a_writer_killed_after_creating_the_order_is_committed_and_its_retry_replays(
    gateway: Gateway, shop: Shop, sharded: ShardedDatabases
) -> None:
    customer, product = await shop.customer(), await shop.product(stock=10)
    request, key = shop.order(customer, (product, 2)), f"k-{uuid.uuid4()}"

    await kill_writer_at(sharded, saga_crash_process.AFTER_CREATE, request, key)

    [order] = (await gateway.customer_orders(customer.id)).orders
    assert await reservation(gateway, order.id) == "held"
    retried = await gateway.place_order_once(request, idempotency_key=key)
    assert retried.replayed and retried.order.id == order.id
    assert await shop.stock(product) == 8  # the retry reserved nothing
    await time_passes(gateway)
    assert (await gateway.sharding.sweep()).settled[Settlement.COMMIT] >= 1
    assert await reservation(gateway, order.id) == "committed"
    assert await shop.stock(product) == 8
    await assert_units_conserved(gateway, {product.id: 10})


async def test_a_retry_after_a_writer_died_before_creating_takes_over_its_reservation(
    gateway: Gateway, shop: Shop, sharded: ShardedDatabases
) -> None:
    customer, product = await shop.customer(), await shop.product(stock=10)
    request, key = shop.order(customer, (product, 4)), f"k-{uuid.uuid4()}"

    await kill_writer_at(sharded, saga_crash_process.AFTER_RESERVE, request, key)
    retried = await gateway.place_order_once(request, idempotency_key=key)

    assert not retried.replayed
    assert await shop.stock(product) == 6  # the units the dead writer reserved, not 4 more
    assert await reservation(gateway, retried.order.id) == "committed"
    await assert_units_conserved(gateway, {product.id: 10})


async def test_concurrent_duplicates_for_the_last_unit_get_one_order_never_a_shortage(
    gateway: Gateway, shop: Shop
) -> None:
    customer, product = await shop.customer(), await shop.product(stock=1)
    request, key = shop.order(customer, (product, 1)), f"k-{uuid.uuid4()}"

    async def both_waiting_for_the_product() -> bool:
        waiting: int = await gateway.pool.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
            " AND wait_event_type = 'Lock' AND query LIKE '%FOR UPDATE%'"
        )
        return waiting >= 2

    # Both requests look for a reservation held with their key, find none, then wait for the
    # product's row, which a third transaction holds until both are waiting.
    async with gateway.pool.acquire() as holder, holder.transaction():
        await holder.execute("SELECT 1 FROM products WHERE id = $1 FOR UPDATE", product.id)
        first, second = (
            asyncio.create_task(gateway.place_order_once(request, idempotency_key=key))
            for _ in range(2)
        )
        await eventually(both_waiting_for_the_product, within=30)
    answers = await asyncio.gather(first, second, return_exceptions=True)

    placed = [answer for answer in answers if not isinstance(answer, BaseException)]
    in_progress = [answer for answer in answers if isinstance(answer, RequestInProgress)]
    assert len(placed) + len(in_progress) == 2, answers
    assert len({answer.order.id for answer in placed}) == 1
    retried = await gateway.place_order_once(request, idempotency_key=key)
    assert retried.replayed and retried.order.id == placed[0].order.id
    assert [o.id for o in (await gateway.customer_orders(customer.id)).orders] == [retried.order.id]
    assert await shop.stock(product) == 0
    await assert_units_conserved(gateway, {product.id: 1})


async def test_a_writer_killed_after_cancelling_leaves_the_return_to_the_sweeper(
    gateway: Gateway, shop: Shop, sharded: ShardedDatabases
) -> None:
    customer, product = await shop.customer(), await shop.product(stock=10)
    order = await gateway.place_order(shop.order(customer, (product, 5)))

    await kill_writer_at(sharded, saga_crash_process.AFTER_CANCEL, {}, str(order.id))

    assert (await gateway.get_order(order.id)).status is OrderStatus.CANCELLED
    assert await shop.stock(product) == 5
    assert (await gateway.sharding.sweep()).settled[Settlement.RETURN] >= 1
    assert await shop.stock(product) == 10
    assert await reservation(gateway, order.id) == "returned"
    await assert_units_conserved(gateway, {product.id: 10})


async def test_cancelling_returns_units_through_the_catalog_once(
    gateway: Gateway, shop: Shop
) -> None:
    customer, product = await shop.customer(), await shop.product(stock=10)
    order = await gateway.place_order(shop.order(customer, (product, 3)))
    await gateway.transition(order.id, "cancelled")
    assert await shop.stock(product) == 10
    assert await reservation(gateway, order.id) == "returned"
    await gateway.sharding.sweep()
    assert await shop.stock(product) == 10
    await assert_units_conserved(gateway, {product.id: 10})


async def test_one_sweeper_at_a_time(gateway: Gateway, shop: Shop) -> None:
    customer, product = await shop.customer(), await shop.product(stock=10)
    order = await gateway.place_order(shop.order(customer, (product, 1)))
    await gateway.pool.execute(
        "UPDATE inventory_reservations SET status = 'held' WHERE order_id = $1", order.id
    )
    await time_passes(gateway)
    async with gateway.pool.acquire() as other, other.transaction():
        await other.execute("SELECT pg_advisory_xact_lock($1)", AdvisoryLock.SAGA_SWEEP)
        assert (await gateway.sharding.sweep()).total == 0
    assert (await gateway.sharding.sweep()).settled[Settlement.COMMIT] >= 1
    assert await reservation(gateway, order.id) == "committed"


@pytest.fixture
def beta_restarted_after() -> Iterator[None]:
    yield
    start_server(SHARD_SERVERS["beta"])


async def test_a_shard_stopped_mid_run_loses_no_units(
    gateway: Gateway,
    shop: Shop,
    beta_restarted_after: None,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Orders keep coming to both shards while beta stops; one of beta's is caught between
    its reservation and its creation when the server goes."""
    customers = await customers_on_each_shard(gateway, shop)
    products = [await shop.product(stock=1_000) for _ in range(3)]
    initial = {p.id: 1_000 for p in products}
    outcomes: dict[str, list[str]] = {"placed": [], "failed": []}
    twenty_on_beta, caught, server_gone = asyncio.Event(), asyncio.Event(), asyncio.Event()
    create = gateway.sharding._create_order

    async def create_unless_caught(pool: asyncpg.Pool, *args: Any) -> Any:
        if (
            pool is gateway.sharding.shards["beta"]
            and twenty_on_beta.is_set()
            and not caught.is_set()
        ):
            caught.set()
            await server_gone.wait()
        return await create(pool, *args)

    monkeypatch.setattr(gateway.sharding, "_create_order", create_unless_caught)

    async def place(shard: str, number: int) -> None:
        lines = [(products[number % 3], 1 + number % 4), (products[(number + 1) % 3], 1)]
        try:
            await gateway.place_order(shop.order(customers[shard], *lines))
            outcomes["placed"].append(shard)
            if outcomes["placed"].count("beta") >= 20:
                twenty_on_beta.set()
        except Exception as error:
            if not is_unavailability(error):
                raise
            outcomes["failed"].append(shard)

    async def writers(shard: str) -> None:
        number = 0
        while not server_gone.is_set() or number < 80:
            await asyncio.gather(*(place(shard, number + i) for i in range(4)))
            number += 4

    async def stop_beta_mid_run() -> None:
        await caught.wait()
        await asyncio.to_thread(stop_server, SHARD_SERVERS["beta"])
        server_gone.set()

    await asyncio.wait_for(
        asyncio.gather(writers("alpha"), writers("beta"), stop_beta_mid_run()), 120
    )
    assert "beta" in outcomes["failed"]
    assert outcomes["placed"].count("alpha") >= 80
    # The caught order's units stay held: whether its shard committed it cannot be known.
    held = "SELECT count(*) FROM inventory_reservations WHERE status = 'held' AND shard = $1"
    assert await gateway.pool.fetchval(held, "beta") >= 1

    await asyncio.to_thread(start_server, SHARD_SERVERS["beta"])
    await time_passes(gateway)
    for _ in range(3):  # the pool's connections to beta died with it: later sweeps reconnect
        if not (await gateway.sharding.sweep()).unreachable:
            break
    assert await gateway.pool.fetchval(held, "beta") == 0
    await assert_units_conserved(gateway, initial)


# --- reads over every shard --------------------------------------------------------------


async def test_the_report_merges_every_shard_and_says_when_one_is_missing(
    beta_restarted_after: None,
) -> None:
    async with sharded_databases() as own, await connect_sharded(own) as gateway:
        shop = Shop(gateway)
        customers = await customers_on_each_shard(gateway, shop)
        product = await shop.product("10.00")
        since = datetime.now(UTC) - timedelta(seconds=1)
        for shard, count in (("alpha", 3), ("beta", 2)):
            for _ in range(count):
                await gateway.place_order(
                    shop.order(customers[shard], (product, 1), customer_segment=shard)
                )
        until = datetime.now(UTC) + timedelta(seconds=1)

        whole = await gateway.orders_report(since, until, "segment")
        assert not whole.partial and whole.answered == ["alpha", "beta"]
        by_segment = {row.bucket: (row.orders, row.revenue) for row in whole.rows}
        # 10.00 + 8% tax + 5.00 shipping each
        assert by_segment == {"alpha": (3, Decimal("47.40")), "beta": (2, Decimal("31.60"))}
        [pending] = (await gateway.orders_report(since, until, "status")).rows
        assert (pending.bucket, pending.orders) == ("pending", 5)

        await asyncio.to_thread(stop_server, SHARD_SERVERS["beta"])
        partial = await gateway.orders_report(since, until, "segment")
        assert partial.partial and list(partial.missing) == ["beta"]
        assert partial.answered == ["alpha"]
        assert {row.bucket: row.orders for row in partial.rows} == {"alpha": 3}

        status = await shards_status(gateway.pool, gateway.sharding.shards, 5)
        assert status.counts["beta"] is None and "beta" in status.missing
        assert status.counts["alpha"] is not None
        await asyncio.to_thread(start_server, SHARD_SERVERS["beta"])


# --- the relay -----------------------------------------------------------------------------


async def test_the_relay_delivers_every_shards_events_to_the_stores_with_no_drift() -> None:
    async with sharded_databases() as own:
        tag = uuid.uuid4().hex[:10]
        sinks = {kind: store_settings(kind, tag) for kind in STORES}
        configured = Settings.model_validate({"postgres": {"url": own.catalog}, "sinks": sinks})
        settings = own.settings().model_copy(update={"relay": FAST, "sinks": configured.sinks})
        readers = {kind: make_sink(kind, tag) for kind in STORES}
        try:
            async with await connect_sharded(own) as gateway:
                shop = Shop(gateway)
                customers = await customers_on_each_shard(gateway, shop)
                product = await shop.product(stock=1_000)
                orders = []
                for shard in ("alpha", "beta", "alpha", "beta", "beta"):
                    order = await gateway.place_order(shop.order(customers[shard], (product, 2)))
                    orders.append(await gateway.transition(order.id, "confirmed"))
                await gateway.transition(orders[0].id, "cancelled")
                async with await ShardedRelay.connect(settings) as relay:
                    await asyncio.wait_for(relay.run(until_idle=True), 120)
                for kind, reader in readers.items():
                    drift = await verify(list(gateway.sharding.shards.values()), kind, reader)  # type: ignore[arg-type]
                    assert drift.clean and drift.matched == 5, (kind, drift)
                status = await shards_status(gateway.pool, gateway.sharding.shards, 5)
                assert all(c is not None and c.backlog == 0 for c in status.counts.values())
        finally:
            for reader in readers.values():
                try:
                    await drop_namespace(reader)
                finally:
                    await reader.close()


async def test_the_relay_starts_with_a_shard_down_and_relays_it_once_it_answers(
    beta_restarted_after: None,
) -> None:
    """beta's server is stopped when the relay starts: the relay starts, alpha's orders reach
    Redis meanwhile, and once beta's server is back beta's orders do too, with no drift."""
    async with sharded_databases() as own, await connect_sharded(own) as gateway:
        tag = uuid.uuid4().hex[:10]
        configured = Settings.model_validate(
            {"postgres": {"url": own.catalog}, "sinks": {"redis": store_settings("redis", tag)}}
        )
        settings = own.settings().model_copy(update={"relay": FAST, "sinks": configured.sinks})
        reader = make_sink("redis", tag)
        assert isinstance(reader, ReadBack)
        shop = Shop(gateway)
        customers = await customers_on_each_shard(gateway, shop)
        product = await shop.product(stock=10)
        placed = {
            shard: await gateway.place_order(shop.order(customer, (product, 1)))
            for shard, customer in customers.items()
        }

        async def holds(shard: str) -> bool:
            order = placed[shard]
            span = OrderSpan(order.created_at, order.updated_at)
            held = await reader.projected_orders({str(order.id): span})
            return str(order.id) in held

        await asyncio.to_thread(stop_server, SHARD_SERVERS["beta"])
        relay = await ShardedRelay.connect(settings)
        running = asyncio.create_task(relay.run())
        try:
            assert set(relay.waiting) == {"beta"} and "alpha" in relay.relays
            await eventually(lambda: holds("alpha"), within=60)
            assert "beta" in relay.waiting

            await asyncio.to_thread(start_server, SHARD_SERVERS["beta"])
            await eventually(lambda: holds("beta"), within=120)

            assert not relay.waiting and "beta" in relay.relays
        finally:
            relay.stop()
            await running
            await relay.close()
        try:
            drift = await verify(list(gateway.sharding.shards.values()), "redis", reader)
            assert drift.clean and drift.matched == 2, drift
        finally:
            try:
                await drop_namespace(reader)
            finally:
                await reader.close()


async def test_the_relay_cancels_unpaid_orders_on_every_shard_and_returns_their_units() -> None:
    async with sharded_databases() as own, await connect_sharded(own) as gateway:
        shop = Shop(gateway)
        customers = await customers_on_each_shard(gateway, shop)
        product = await shop.product(stock=10)
        orders = [
            await gateway.place_order(shop.order(customer, (product, 2)))
            for customer in customers.values()
        ]
        for order in orders:  # stands in for the payment timeout passing
            await gateway.sharding.shards[gateway.sharding.shard_of_order(order.id)].execute(
                "UPDATE orders SET payment_due_at = now() - interval '1 second' WHERE id = $1",
                order.id,
            )
        assert await shop.stock(product) == 6
        fast = FAST.model_copy(update={"payment_sweep_interval_seconds": 0.05})
        memory = {"postgres": {"url": own.catalog}, "sinks": {"memory": {"type": "memory"}}}
        sinks = Settings.model_validate(memory).sinks
        settings = own.settings().model_copy(update={"relay": fast, "sinks": sinks})
        async with await ShardedRelay.connect(settings) as relay:
            running = asyncio.create_task(relay.run())

            async def restocked() -> bool:
                return await shop.stock(product) == 10

            try:
                await eventually(restocked)
            finally:
                relay.stop()
                await running
        for order in orders:
            assert (await gateway.get_order(order.id)).status is OrderStatus.CANCELLED
            assert await reservation(gateway, order.id) == "returned"
        await assert_units_conserved(gateway, {product.id: 10})


async def live_orders_without_a_committed_reservation(gateway: Gateway) -> list[Any]:
    """Orders in any shard that are not cancelled and whose reservation is not committed."""
    broken = []
    for pool in gateway.sharding.shards.values():
        for row in await pool.fetch("SELECT id FROM orders WHERE status <> 'cancelled'"):
            status = await reservation(gateway, row["id"])
            if status not in ("committed", "held"):
                broken.append((row["id"], status))
    return broken


async def test_an_order_cannot_be_created_once_the_sweeper_released_its_reservation(
    gateway: Gateway, shop: Shop, monkeypatch: pytest.MonkeyPatch
) -> None:
    customer, product = await shop.customer(), await shop.product(stock=10)
    insert_placed = gateway.sharding._placer.insert_placed
    key = f"k-{uuid.uuid4()}"

    async def sweeper_runs_while_creating(*args: Any) -> Any:
        placed = await insert_placed(*args)  # the order's row, not committed yet
        await time_passes(gateway)  # the shard is slower than reservation_seconds
        assert (await gateway.sharding.sweep()).settled[Settlement.RELEASE] >= 1
        return placed

    monkeypatch.setattr(gateway.sharding._placer, "insert_placed", sweeper_runs_while_creating)
    with pytest.raises(ReservationLapsed) as lapsed:
        await gateway.place_order(shop.order(customer, (product, 3)), idempotency_key=key)
    monkeypatch.undo()

    with pytest.raises(NotFound):
        await gateway.get_order(lapsed.value.order_id)  # type: ignore[arg-type]
    assert await reservation(gateway, lapsed.value.order_id) == "released"  # type: ignore[arg-type]
    assert await shop.stock(product) == 10
    # The key was not kept with an order: a retry places the order, alive and with its units.
    retried = await gateway.place_order_once(
        shop.order(customer, (product, 3)), idempotency_key=key
    )
    assert not retried.replayed
    assert retried.order.status is OrderStatus.PENDING
    assert await reservation(gateway, retried.order.id) == "committed"
    assert await shop.stock(product) == 7
    await assert_units_conserved(gateway, {product.id: 10})


async def test_a_slow_create_and_the_sweeper_cannot_both_win(
    gateway: Gateway, shop: Shop, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The sweeper settles the reservation while the create step's transaction is open and the
    process dies before any compensation: the order and its units still agree."""
    customer, product = await shop.customer(), await shop.product(stock=10)
    create = gateway.sharding._create_order
    sweeping: list[asyncio.Task[Any]] = []

    async def sweeper_runs_before_the_commit(*args: Any) -> Any:
        insert_placed = gateway.sharding._placer.insert_placed

        async def and_then_the_sweeper(*inner: Any) -> Any:
            placed = await insert_placed(*inner)
            await time_passes(gateway)
            sweeping.append(asyncio.create_task(gateway.sharding.sweep()))
            shard = await gateway.sharding.shard_of_customer(customer.id)

            async def sweeper_waits_or_is_done() -> bool:
                if sweeping[0].done():
                    return True
                waiting = await gateway.sharding.shards[shard].fetchval(
                    "SELECT count(*) FROM pg_stat_activity"
                    " WHERE datname = current_database() AND wait_event_type = 'Lock'"
                )
                return bool(waiting)

            await eventually(sweeper_waits_or_is_done)
            return placed

        monkeypatch.setattr(gateway.sharding._placer, "insert_placed", and_then_the_sweeper)
        return await create(*args)

    async def dies(*_: Any, **__: Any) -> Any:
        raise asyncio.CancelledError  # the process dies before any compensation

    monkeypatch.setattr(gateway.sharding, "_create_order", sweeper_runs_before_the_commit)
    monkeypatch.setattr(gateway.sharding, "_settle", dies)
    monkeypatch.setattr(gateway, "transition", dies)
    with pytest.raises((asyncio.CancelledError, ReservationLapsed)):
        await gateway.place_order(shop.order(customer, (product, 3)))
    monkeypatch.undo()
    await sweeping[0]
    await time_passes(gateway)
    await gateway.sharding.sweep()

    assert await live_orders_without_a_committed_reservation(gateway) == []
    await assert_units_conserved(gateway, {product.id: 10})


@contextlib.asynccontextmanager
async def blackholed_shard() -> AsyncIterator[asyncpg.Pool]:
    """A pool to a server that accepts connections and never answers (a blackholed host)."""
    held: list[asyncio.StreamWriter] = []

    async def never_answer(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)

    server = await asyncio.start_server(never_answer, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    pool = await asyncpg.create_pool(
        f"postgresql://nobody@127.0.0.1:{port}/nothing", min_size=0, timeout=120
    )
    try:
        yield pool
    finally:
        pool.terminate()
        for writer in held:
            writer.close()
        server.close()


async def test_a_shard_that_does_not_answer_does_not_starve_the_others(
    gateway: Gateway, shop: Shop
) -> None:
    """Expired reservations of a blackholed shard, the oldest, fill more than a sweep's limit:
    the other shard's reservation is settled all the same, and the sweep ends promptly."""
    product = await shop.product(stock=100)
    on_beta = (await customers_on_each_shard(gateway, shop))["beta"]
    limit = 5
    for _ in range(limit + 2):
        await gateway.pool.execute(
            "INSERT INTO inventory_reservations (order_id, shard, customer_id, product_ids,"
            " quantities, expires_at) VALUES ($1, 'alpha', $2, $3, $4, now() - interval '1 hour')",
            uuid.uuid4(),
            uuid.uuid4(),
            [product.id],
            [1],
        )
    await gateway.pool.execute(
        "UPDATE products SET inventory_quantity = 93 WHERE id = $1", product.id
    )
    beta_order = await gateway.place_order(shop.order(on_beta, (product, 1)))
    await gateway.pool.execute(
        "UPDATE inventory_reservations SET status = 'held', expires_at = now() WHERE order_id = $1",
        beta_order.id,
    )

    async with blackholed_shard() as alpha:
        shards = dict(gateway.sharding.shards) | {"alpha": alpha}
        result = await asyncio.wait_for(
            sweeper.sweep(gateway.pool, shards, limit=limit, timeout_seconds=1.0), 60
        )

    assert result.unreachable == {"alpha"}
    assert await reservation(gateway, beta_order.id) == "committed"
    held_on_alpha = await gateway.pool.fetchval(
        "SELECT count(*) FROM inventory_reservations WHERE shard = 'alpha' AND status = 'held'"
        " AND $1 = ANY(product_ids)",
        product.id,
    )
    assert held_on_alpha == limit + 2  # nobody could ask alpha: left for a later sweep
    await gateway.pool.execute(
        "DELETE FROM inventory_reservations WHERE shard = 'alpha' AND $1 = ANY(product_ids)"
        " AND status = 'held'",
        product.id,
    )


async def test_idempotency_keys_of_reservations_are_scoped_by_shard(
    gateway: Gateway, shop: Shop, sharded: ShardedDatabases
) -> None:
    """A key a customer on one shard holds in an open reservation does not conflict with the
    same key used by a customer on another shard (keys are kept per shard, as in the shards)."""
    on_shard = await customers_on_each_shard(gateway, shop)
    product = await shop.product(stock=10)
    key = f"k-{uuid.uuid4()}"
    await kill_writer_at(
        sharded, saga_crash_process.AFTER_RESERVE, shop.order(on_shard["alpha"], (product, 1)), key
    )

    placed = await gateway.place_order_once(
        shop.order(on_shard["beta"], (product, 2)), idempotency_key=key
    )

    assert not placed.replayed
    assert placed.order.customer_id == on_shard["beta"].id
    assert await shop.stock(product) == 7
    await assert_units_conserved(gateway, {product.id: 10})
    # The killed writer's reservation is settled here, not by a later test's sweep.
    await time_passes(gateway)
    assert (await gateway.sharding.sweep()).settled[Settlement.RELEASE] == 1


async def test_a_sweeper_that_finds_the_order_being_created_waits_and_leaves_it_its_units(
    gateway: Gateway, shop: Shop, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The create step recorded its decision but has not committed when the reservation
    expires: the sweeper waits for that transaction and leaves the units with the order (it
    or the writer commits them, whichever comes first)."""
    customer, product = await shop.customer(), await shop.product(stock=10)
    shard = gateway.sharding.shards[await gateway.sharding.shard_of_customer(customer.id)]
    decide = decisions.decide
    sweeping: list[asyncio.Task[sweeper.SweepResult]] = []

    async def sweeper_runs_after_the_decision(*args: Any, **kwargs: Any) -> Decision:
        decided = await decide(*args, **kwargs)
        if decided is Decision.CREATED and not sweeping:
            await time_passes(gateway)
            sweeping.append(asyncio.create_task(gateway.sharding.sweep()))

            async def sweeper_waits_for_the_decision() -> bool:
                waiting = await shard.fetchval(
                    "SELECT count(*) FROM pg_stat_activity"
                    " WHERE datname = current_database() AND wait_event_type = 'Lock'"
                )
                return bool(waiting)

            await eventually(sweeper_waits_for_the_decision)
        return decided

    monkeypatch.setattr(decisions, "decide", sweeper_runs_after_the_decision)
    order = await gateway.place_order(shop.order(customer, (product, 3)))
    monkeypatch.undo()
    result = await sweeping[0]

    assert result.settled[Settlement.RELEASE] == 0
    assert (await gateway.get_order(order.id)).status is OrderStatus.PENDING
    assert await reservation(gateway, order.id) == "committed"
    assert await shop.stock(product) == 7
    await assert_units_conserved(gateway, {product.id: 10})


async def test_a_key_settled_meanwhile_on_every_attempt_is_a_documented_conflict(
    gateway: Gateway, shop: Shop, monkeypatch: pytest.MonkeyPatch
) -> None:
    customer, product = await shop.customer(), await shop.product(stock=10)
    attempts: list[str] = []

    async def settled_meanwhile(*args: Any) -> Any:
        attempts.append("reserve")
        raise reservations.KeySettledMeanwhile("k")

    monkeypatch.setattr(reservations, "reserve", settled_meanwhile)
    before = await shop.counts()
    with pytest.raises(RequestInProgress) as busy:
        await gateway.place_order(shop.order(customer, (product, 1)), idempotency_key="k-busy")

    assert len(attempts) == PLACE_ATTEMPTS
    problem = problem_of(busy.value)
    assert (problem.status, problem.kind) == (409, "request-in-progress")
    assert problem.headers["Retry-After"] == "1"
    assert "k-busy" in problem.detail
    assert await shop.counts() == before


# --- reconciliation ----------------------------------------------------------------------


async def test_reconcile_repairs_every_reservation_that_disagrees_with_its_order() -> None:
    async with sharded_databases() as fresh, await connect_sharded(fresh) as gateway:
        shop = Shop(gateway)
        customer = await shop.customer()
        product, scarce = await shop.product(stock=10), await shop.product(stock=4)
        orders = [await gateway.place_order(shop.order(customer, (product, 2))) for _ in range(3)]
        pending_scarce = await gateway.place_order(shop.order(customer, (scarce, 2)))
        confirmed_scarce = await gateway.place_order(shop.order(customer, (scarce, 2)))
        await gateway.transition(confirmed_scarce.id, OrderStatus.CONFIRMED)
        intact = await gateway.place_order(shop.order(customer, (product, 1)))
        # Breaks as a defect or a hand would leave them (units given back, order alive; order
        # cancelled, units kept):
        released, returned, cancelled = orders
        await gateway.pool.execute(
            "UPDATE inventory_reservations SET status = 'released' WHERE order_id = ANY($1)",
            [released.id, pending_scarce.id, confirmed_scarce.id],
        )
        await gateway.pool.execute(
            "UPDATE inventory_reservations SET status = 'returned' WHERE order_id = $1",
            returned.id,
        )
        await gateway.pool.execute(
            "UPDATE products SET inventory_quantity = inventory_quantity + 4 WHERE id = $1",
            product.id,
        )
        await gateway.transition(cancelled.id, OrderStatus.CANCELLED)
        await gateway.pool.execute(
            "UPDATE inventory_reservations SET status = 'committed' WHERE order_id = $1",
            cancelled.id,
        )
        await gateway.pool.execute(
            "UPDATE products SET inventory_quantity = inventory_quantity - 2 WHERE id = $1",
            product.id,
        )
        # The scarce product's units went to somebody else meanwhile.
        await gateway.pool.execute(
            "UPDATE products SET inventory_quantity = 0 WHERE id = $1", scarce.id
        )
        stock_before = await shop.stock(product)

        report = await gateway.sharding.reconcile(repair=False)
        assert await shop.stock(product) == stock_before  # a dry run repairs nothing
        found = {b.order_id: b.repair for b in report.breaks}
        assert found == {
            released.id: Repair.RETAKE,
            returned.id: Repair.RETAKE,
            cancelled.id: Repair.RETURN,
            pending_scarce.id: Repair.RETAKE,
            confirmed_scarce.id: Repair.RETAKE,
        }
        assert intact.id not in found

        result = await gateway.sharding.reconcile()

        repairs = {b.order_id: (b.repair, b.repaired) for b in result.breaks}
        assert repairs == {
            released.id: (Repair.RETAKE, True),
            returned.id: (Repair.RETAKE, True),
            cancelled.id: (Repair.RETURN, True),
            pending_scarce.id: (Repair.CANCEL, True),
            confirmed_scarce.id: (None, False),  # sold without units: an operator decides
        }
        for order in (released, returned):
            assert await reservation(gateway, order.id) == "committed"
        assert await reservation(gateway, cancelled.id) == "returned"
        cancelled_now = await gateway.get_order(pending_scarce.id)
        assert cancelled_now.status is OrderStatus.CANCELLED
        await assert_units_conserved(gateway, {product.id: 10})
        again = await gateway.sharding.reconcile()
        assert [b.order_id for b in again.breaks] == [confirmed_scarce.id]


class FreezingProxy:
    """Forwards TCP connections to a PostgreSQL server until ``freeze``; from then on it
    passes nothing either way and keeps every connection open (a server that stopped
    answering, as behind a network partition)."""

    def __init__(self, target_port: int) -> None:
        self._target_port = target_port
        self._flowing = asyncio.Event()
        self._flowing.set()
        self._writers: list[asyncio.StreamWriter] = []
        self._server: asyncio.Server | None = None

    async def __aenter__(self) -> FreezingProxy:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *_: object) -> None:
        self._flowing.set()
        for writer in self._writers:
            writer.transport.abort()
        assert self._server is not None
        self._server.close()

    @property
    def port(self) -> int:
        assert self._server is not None
        return int(self._server.sockets[0].getsockname()[1])

    def freeze(self) -> None:
        self._flowing.clear()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        upstream_reader, upstream_writer = await asyncio.open_connection(
            "127.0.0.1", self._target_port
        )
        self._writers += [writer, upstream_writer]
        await asyncio.gather(
            self._pipe(reader, upstream_writer),
            self._pipe(upstream_reader, writer),
            return_exceptions=True,
        )

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while data := await reader.read(65536):
            await self._flowing.wait()
            writer.write(data)
            await writer.drain()


async def test_a_shard_that_stops_answering_during_a_sweep_holds_up_no_other_shard(
    gateway: Gateway, shop: Shop, sharded: ShardedDatabases, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Alpha answers the sweep's first question, then nothing: the sweep gives up on it within
    its timeout (not the pool's 60 s command timeout) and settles beta's reservation."""
    product = await shop.product(stock=10)
    on_beta = (await customers_on_each_shard(gateway, shop))["beta"]
    order = await gateway.place_order(shop.order(on_beta, (product, 1)))
    await gateway.pool.execute(
        "UPDATE inventory_reservations SET status = 'held', expires_at = now() WHERE order_id = $1",
        order.id,
    )
    alpha_url = urlsplit(sharded.shards["alpha"])
    async with FreezingProxy(alpha_url.port or 5432) as proxy:
        through_proxy = alpha_url._replace(
            netloc=f"{alpha_url.netloc.rsplit('@', 1)[0]}@127.0.0.1:{proxy.port}"
        )
        alpha = await asyncpg.create_pool(through_proxy.geturl(), min_size=1, command_timeout=60)
        answering = sweeper._answering

        async def then_alpha_freezes(*args: Any) -> Any:
            found = await answering(*args)
            proxy.freeze()
            return found

        monkeypatch.setattr(sweeper, "_answering", then_alpha_freezes)
        shards = dict(gateway.sharding.shards) | {"alpha": alpha}
        try:
            result = await asyncio.wait_for(
                sweeper.sweep(gateway.pool, shards, timeout_seconds=1.0), 20
            )
        finally:
            alpha.terminate()

    assert result.unreachable == {"alpha"}
    assert await reservation(gateway, order.id) == "committed"


async def test_an_expired_reservation_whose_created_order_is_gone_gives_its_units_back(
    gateway: Gateway, shop: Shop
) -> None:
    customer, product = await shop.customer(), await shop.product(stock=10)
    order = await gateway.place_order(shop.order(customer, (product, 4)))
    shard = gateway.sharding.shards[gateway.sharding.shard_of_order(order.id)]
    await gateway.pool.execute(
        "UPDATE inventory_reservations SET status = 'held', expires_at = now() WHERE order_id = $1",
        order.id,
    )
    async with shard.acquire() as connection, connection.transaction():  # removed by hand
        for table in ("order_status_history", "payments", "order_items"):
            if await connection.fetchval("SELECT to_regclass($1) IS NOT NULL", table):
                await connection.execute(f"DELETE FROM {table} WHERE order_id = $1", order.id)
        await connection.execute("DELETE FROM orders WHERE id = $1", order.id)

    assert (await gateway.sharding.sweep()).settled[Settlement.RETURN] >= 1

    assert await reservation(gateway, order.id) == "returned"
    assert await shop.stock(product) == 10


async def test_reconcile_never_cancels_an_order_that_changed_after_it_looked(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A payment confirms the order between the reconciliation's look and its cancel: the
    confirmed order stays confirmed, and the break is reported for the next run."""
    async with sharded_databases() as fresh, await connect_sharded(fresh) as gateway:
        shop = Shop(gateway)
        customer, scarce = await shop.customer(), await shop.product(stock=2)
        order = await gateway.place_order(shop.order(customer, (scarce, 2)))
        await gateway.pool.execute(
            "UPDATE inventory_reservations SET status = 'released' WHERE order_id = $1", order.id
        )
        transition = orders.transition

        async def a_payment_comes_first(
            connection: Any, order_id: Any, status: Any, *args: Any
        ) -> Any:
            if status is OrderStatus.CANCELLED:
                await gateway.transition(order_id, OrderStatus.CONFIRMED)
            return await transition(connection, order_id, status, *args)

        monkeypatch.setattr(orders, "transition", a_payment_comes_first)
        result = await gateway.sharding.reconcile()

        assert [(b.repair, b.repaired) for b in result.breaks] == [(Repair.CANCEL, False)]
        assert (await gateway.get_order(order.id)).status is OrderStatus.CONFIRMED
