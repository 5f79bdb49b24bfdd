"""Moving a customer between shards (``fanout shards move``) against three real PostgreSQL
servers: the catalog and the shards ``alpha`` and ``beta``.

A move while the customer's orders and others' keep changing, with a relay delivering every
shard's outbox; a crash after each step of a move, then its resumption; a pause that times
out; a customer moved away and back. After each: every order id resolves through every route,
nothing is split or lost, and the stock invariant holds.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import random
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from gateway import Customer, Gateway, IllegalTransition, NotFound, Order, OrderStatus, Product
from gateway.api.problems import problem_of
from gateway.configuration.settings import Settings
from gateway.errors import CustomerMoving, MoveRefused, VersionConflict
from gateway.order_ids import shard_tag, tag_of
from gateway.postgres.queries import query
from gateway.sharding import move_records, move_rows
from gateway.sharding import mover as mover_module
from gateway.sharding.move_rules import MoveState
from gateway.sharding.mover import MoveStep
from gateway.sharding.relays import ShardedRelay
from support.eventually import eventually
from support.sharding import SHARD_SERVERS, ShardedDatabases, connect_sharded, sharded_databases
from support.shop import Shop
from tests.acceptance.test_sharding import assert_units_conserved, customers_on_each_shard
from tests.acceptance.test_sharding_cli import as_json, fanout
from tests.relay_settings import FAST

NEXT_STATUS = {
    OrderStatus.PENDING: OrderStatus.CONFIRMED,
    OrderStatus.CONFIRMED: OrderStatus.PROCESSING,
    OrderStatus.PROCESSING: OrderStatus.SHIPPED,
    OrderStatus.SHIPPED: OrderStatus.DELIVERED,
}

CUSTOMER_TABLES = {
    "customers": "id = $1",
    "addresses": "customer_id = $1",
    "orders": "customer_id = $1",
}
ORDER_TABLES = {
    "order_items": "order_id",
    "payments": "order_id",
    "order_events": "stream_id",
    "inventory_returns": "order_id",
    "reservation_decisions": "order_id",
    "idempotency_keys": "resource_id",
}


@pytest.fixture(scope="module")
async def gateway(sharded: ShardedDatabases) -> AsyncIterator[Gateway]:
    async with await connect_sharded(sharded) as connected:
        yield connected


@pytest.fixture
def journal(tmp_path: Path) -> Path:
    """Where the relay's in-memory sinks append every delivery, one file for every database's
    relay, in the order they were applied."""
    return tmp_path / "deliveries.jsonl"


@pytest.fixture
async def relay(
    sharded: ShardedDatabases, gateway: Gateway, journal: Path
) -> AsyncIterator[ShardedRelay]:
    """A relay delivering every database's outbox to an in-memory sink, so that a move's pause
    has positions to wait for; the sink is forgotten afterwards (a sink that stays registered
    and never moves would hold every later move's pause)."""
    sink = {"type": "memory", "journal_path": str(journal)}
    memory = {"postgres": {"url": sharded.catalog}, "sinks": {"memory": sink}}
    sinks = Settings.model_validate(memory).sinks
    settings = sharded.settings().model_copy(update={"relay": FAST, "sinks": sinks})
    try:
        async with await ShardedRelay.connect(settings) as running_relay:
            task = asyncio.create_task(running_relay.run())
            try:
                yield running_relay
            finally:
                running_relay.stop()
                await task
    finally:
        for pool in (gateway.pool, *gateway.sharding.shards.values()):
            await pool.execute("DELETE FROM relay_positions WHERE sink = 'memory'")


def other(gateway: Gateway, shard: str) -> str:
    return next(name for name in gateway.sharding.shards if name != shard)


async def rows_of(gateway: Gateway, shard: str, customer_id: uuid.UUID) -> dict[str, int]:
    """How many rows of the customer and of its orders (as the catalog's reservations name
    them) shard ``shard`` holds, per table."""
    pool = gateway.sharding.shards[shard]
    # Released reservations are of orders never created (a placement that lost the race with
    # a move gave up on its source, where its decision "abandoned" stays).
    order_ids = [
        row["order_id"]
        for row in await gateway.pool.fetch(
            "SELECT order_id FROM inventory_reservations"
            " WHERE customer_id = $1 AND status <> 'released'",
            customer_id,
        )
    ]
    counts = {
        table: await pool.fetchval(f"SELECT count(*) FROM {table} WHERE {where}", customer_id)
        for table, where in CUSTOMER_TABLES.items()
    }
    for table, column in ORDER_TABLES.items():
        counts[table] = await pool.fetchval(
            f"SELECT count(*) FROM {table} WHERE {column} = ANY($1)", order_ids
        )
    return counts


async def assert_lives_on(
    gateway: Gateway, customer: Customer, shard: str, orders: list[uuid.UUID]
) -> None:
    """The customer and all of ``orders`` are on ``shard`` only, the directory says so, and
    every order resolves through the order routes with its history intact."""
    assert await gateway.pool.fetchval(query("directory_shard_of"), customer.id) == shard
    for elsewhere in gateway.sharding.shards:
        if elsewhere != shard:
            found = await rows_of(gateway, elsewhere, customer.id)
            assert set(found.values()) == {0}, (elsewhere, found)
    here = gateway.sharding.shards[shard]
    assert await here.fetchval("SELECT count(*) FROM customers WHERE id = $1", customer.id) == 1
    held = {
        row["id"]
        for row in await here.fetch("SELECT id FROM orders WHERE customer_id = $1", customer.id)
    }
    assert set(orders) <= held
    for order_id in orders:
        order = await gateway.get_order(order_id)
        history = await gateway.order_events(order_id)
        assert [event.version for event in history] == list(range(1, order.version + 1))
    page = await gateway.customer_orders(customer.id, limit=100)
    assert set(orders) <= {order.id for order in page.orders}


async def place(gateway: Gateway, shop: Shop, customer: Customer, product: Product) -> Order:
    return await gateway.place_order(shop.order(customer, (product, 1)))


async def step(gateway: Gateway, order_id: uuid.UUID, rng: random.Random) -> None:
    """Move an order one status on (or cancel it, now and then); a concurrent change of the
    same order or a final status is fine."""
    try:
        current = await gateway.get_order(order_id)
        target = NEXT_STATUS.get(current.status)
        if target is None:
            return
        if current.status is OrderStatus.PENDING and rng.random() < 0.2:
            target = OrderStatus.CANCELLED
        await gateway.transition(order_id, target, expected_version=current.version)
    except (IllegalTransition, VersionConflict):
        pass


async def delivered_in_order(
    gateway: Gateway, journal: Path, order_ids: list[uuid.UUID], source: str, target: str
) -> None:
    """Wait until the sink has every event of ``order_ids`` from both shards, then check that
    for each order every source event was applied before any target event."""
    written: dict[str, str] = {}  # event id -> the shard whose outbox holds it
    for shard in (source, target):
        for row in await gateway.sharding.shards[shard].fetch(
            "SELECT event_id FROM outbox WHERE aggregate_id = ANY($1::text[])",
            [str(order_id) for order_id in order_ids],
        ):
            written[str(row["event_id"])] = shard

    def lines() -> list[str]:
        if not journal.exists():
            return []
        return [json.loads(line)["event_id"] for line in journal.read_text().splitlines()]

    await eventually(lambda: set(written) <= set(lines()))
    aggregates = {
        str(row["event_id"]): row["aggregate_id"]
        for shard in (source, target)
        for row in await gateway.sharding.shards[shard].fetch(
            "SELECT event_id, aggregate_id FROM outbox WHERE event_id = ANY($1::uuid[])",
            list(written),
        )
    }
    seen_target: set[str] = set()
    for event_id in lines():
        if event_id not in written:
            continue
        aggregate = aggregates[event_id]
        if written[event_id] == target:
            seen_target.add(aggregate)
        else:
            assert aggregate not in seen_target, f"order {aggregate}: a source event after the move"


async def test_a_customer_moves_while_its_orders_and_others_keep_changing(
    gateway: Gateway, shop: Shop, relay: ShardedRelay, journal: Path
) -> None:
    placed = await customers_on_each_shard(gateway, shop)
    source, moving = next(iter(placed.items()))
    target = other(gateway, source)
    bystander = placed[target]
    product = await shop.product(stock=10_000)
    mine = [(await place(gateway, shop, moving, product)).id for _ in range(30)]
    theirs = [(await place(gateway, shop, bystander, product)).id for _ in range(6)]
    for order_id in mine[:10]:
        await gateway.transition(order_id, OrderStatus.CONFIRMED)
    rng = random.Random(7)
    started, moved = asyncio.Event(), asyncio.Event()
    during: list[uuid.UUID] = []
    done: list[str] = []  # one entry per operation started, "moving" while the move runs

    async def writer(number: int) -> None:
        for count in itertools.count():
            if moved.is_set() and count >= 12:
                return
            if count == 2:
                started.set()
            done.append("moving" if started.is_set() and not moved.is_set() else "")
            choice = rng.random()
            if choice < 0.25:
                during.append((await place(gateway, shop, moving, product)).id)
            elif choice < 0.35:
                theirs.append((await place(gateway, shop, bystander, product)).id)
            elif choice < 0.85:
                await step(gateway, rng.choice(mine + during), rng)
            else:
                await step(gateway, rng.choice(theirs), rng)

    async def mover() -> Any:
        await started.wait()
        try:
            return await gateway.sharding.move_customer(moving.id, target, pause_timeout=10)
        finally:
            moved.set()

    writers = [asyncio.create_task(writer(n)) for n in range(6)]
    result, *_ = await asyncio.gather(mover(), *writers)

    assert result.move.state is MoveState.DONE, result.move.last_error
    assert result.pause_seconds is not None
    during_move = done.count("moving")
    assert during_move > 0
    raced = await gateway.pool.fetchval(
        "SELECT count(*) FROM inventory_reservations WHERE customer_id = $1"
        " AND status = 'released'",
        moving.id,
    )
    print(
        f"\nmove of {result.orders} orders paused its customer "
        f"{result.pause_seconds * 1000:.0f} ms; {during_move} of {len(done)} operations "
        f"started while it ran; the writers placed {len(during)} orders for it, "
        f"{raced} placement(s) lost the race with the pause and started over"
    )
    orders = mine + during
    assert all(tag_of(order_id) == shard_tag(source) for order_id in mine)
    await assert_lives_on(gateway, moving, target, orders)
    for order_id in theirs:
        assert (await gateway.get_order(order_id)).id == order_id
    tombstones = await gateway.sharding.shards[source].fetchval(
        "SELECT count(*) FROM moved_orders WHERE move_id = $1", result.move.id
    )
    assert tombstones == result.orders
    # Versions continue: a change after the move is the next version, in the target's outbox.
    pending = [
        order_id
        for order_id in orders
        if (await gateway.get_order(order_id)).status is OrderStatus.PENDING
    ]
    if pending:
        before = await gateway.get_order(pending[0])
        after = await gateway.transition(pending[0], OrderStatus.CONFIRMED)
        assert after.version == before.version + 1
        events = await gateway.sharding.shards[target].fetchval(
            "SELECT count(*) FROM outbox WHERE aggregate_id = $1 AND version = $2",
            str(pending[0]),
            after.version,
        )
        assert events == 1
    await assert_units_conserved(gateway, {product.id: 10_000})
    report = await gateway.sharding.reconcile(repair=False)
    assert report.breaks == []
    await delivered_in_order(gateway, journal, orders, source, target)


async def test_every_route_follows_a_moved_customer_through_a_stale_directory(
    sharded: ShardedDatabases, gateway: Gateway, shop: Shop
) -> None:
    customer, product = await shop.customer(), await shop.product(stock=100)
    order = await place(gateway, shop, customer, product)
    source = await gateway.sharding.shard_of_customer(customer.id)
    target = other(gateway, source)
    async with await connect_sharded(sharded) as stale:
        assert await stale.sharding.shard_of_customer(customer.id) == source  # cached
        result = await gateway.sharding.move_customer(customer.id, target)
        assert result.move.state is MoveState.DONE
        assert (await stale.get_order(order.id)).id == order.id
        assert [e.version for e in await stale.order_events(order.id)] == [1]
        paid = await stale.record_payment(
            {
                "payment_id": f"pay-{uuid.uuid4()}",
                "order_id": str(order.id),
                "status": "succeeded",
                "amount": str(order.total_amount),
                "currency": order.currency,
                "occurred_at": datetime.now(UTC).isoformat(),
            }
        )
        assert paid.order.id == order.id
        changed = await stale.transition(order.id, NEXT_STATUS[paid.order.status])
        assert changed.version == paid.order.version + 1
        assert [o.id for o in (await stale.customer_orders(customer.id)).orders] == [order.id]
        address = await stale.add_address(
            customer.id,
            {
                "address_type": "shipping",
                "street_address": "1 Moved St",
                "city": "Springfield",
                "postal_code": "1234",
            },
        )
        assert address.customer_id == customer.id
        again = await stale.place_order(shop.order(customer, (product, 1)))
        assert tag_of(again.id) == shard_tag(target)
        assert await stale.sharding.shard_of_customer(customer.id) == target
    with pytest.raises(NotFound):
        await gateway.get_order(uuid.UUID(int=(shard_tag(source) << 112) | 1))
    await assert_units_conserved(gateway, {product.id: 100})


async def test_a_customer_moved_away_and_back_resolves_every_order(
    gateway: Gateway, shop: Shop
) -> None:
    customer, product = await shop.customer(), await shop.product(stock=100)
    first = await gateway.sharding.shard_of_customer(customer.id)
    second = other(gateway, first)
    orders = [(await place(gateway, shop, customer, product)).id]
    assert (await gateway.sharding.move_customer(customer.id, second)).move.state is MoveState.DONE
    orders.append((await place(gateway, shop, customer, product)).id)  # minted on the second
    assert (await gateway.sharding.move_customer(customer.id, first)).move.state is MoveState.DONE
    await assert_lives_on(gateway, customer, first, orders)
    assert tag_of(orders[1]) == shard_tag(second)
    await gateway.transition(orders[1], OrderStatus.CONFIRMED)  # lands on second, follows back
    await assert_units_conserved(gateway, {product.id: 100})


class Crash(Exception):
    """Stands in for the moving process dying at a step."""


ROLLED_FORWARD = {
    MoveStep.SOURCE_COMMITTED,
    MoveStep.TARGET_COMMITTED,
    MoveStep.CATALOG_COMMITTED,
    MoveStep.CLEANED,
}


@pytest.mark.parametrize("crash_at", list(MoveStep))
async def test_a_move_interrupted_at_any_step_resumes_forward_or_back(
    gateway: Gateway, shop: Shop, crash_at: MoveStep
) -> None:
    customer, product = await shop.customer(), await shop.product(stock=100)
    orders = [(await place(gateway, shop, customer, product)).id for _ in range(3)]
    await gateway.transition(orders[0], OrderStatus.CANCELLED)
    source = await gateway.sharding.shard_of_customer(customer.id)
    target = other(gateway, source)

    async def crash(step: MoveStep) -> None:
        if step is crash_at:
            raise Crash(step.value)

    with pytest.raises(Crash):
        await gateway.sharding.mover(crash).move(customer.id, target)
    # Until the move is resumed, a reconciliation finds nothing broken (the catalog may still
    # name the source for the moved orders' reservations) and so repairs nothing.
    reconciled = await gateway.sharding.reconcile(repair=True)
    assert [found for found in reconciled.breaks if found.order_id in orders] == []
    unfinished = await move_records.unfinished_of(gateway.pool, customer.id)
    if crash_at in (MoveStep.CATALOG_COMMITTED, MoveStep.CLEANED):
        assert unfinished is None  # done before the crash; only its cleanup may be left
        [latest] = [
            m for m in await move_records.listed(gateway.pool) if m.customer_id == customer.id
        ]
        assert (await gateway.sharding.mover().resume(latest)).state is MoveState.DONE
    else:
        assert unfinished is not None
        finished = await gateway.sharding.mover().resume(unfinished)
        expected = MoveState.DONE if crash_at in ROLLED_FORWARD else MoveState.ROLLED_BACK
        assert finished.state is expected
    lives_on = target if crash_at in ROLLED_FORWARD else source
    await assert_lives_on(gateway, customer, lives_on, orders)
    await assert_units_conserved(gateway, {product.id: 100})
    # The customer can move again afterwards (the next move also finishes any leftover).
    back = other(gateway, lives_on)
    assert (await gateway.sharding.move_customer(customer.id, back)).move.state is MoveState.DONE
    await assert_lives_on(gateway, customer, back, orders)


async def test_a_pause_that_outlasts_its_timeout_rolls_back(gateway: Gateway, shop: Shop) -> None:
    customer, product = await shop.customer(), await shop.product(stock=100)
    order = await place(gateway, shop, customer, product)
    source = await gateway.sharding.shard_of_customer(customer.id)
    target = other(gateway, source)
    pool = gateway.sharding.shards[source]
    sink = f"stuck-{uuid.uuid4().hex[:8]}"
    await pool.execute(query("register_sink"), sink, True, 16)  # a sink that never moves
    try:
        result = await gateway.sharding.move_customer(customer.id, target, pause_timeout=0.3)
    finally:
        await pool.execute("DELETE FROM relay_positions WHERE sink = $1", sink)
    assert result.move.state is MoveState.ROLLED_BACK
    assert "not delivered" in (result.move.last_error or "")
    await assert_lives_on(gateway, customer, source, [order.id])
    listed = await move_records.listed(gateway.pool)
    assert result.move.id in {move.id for move in listed}


async def test_the_move_commands(sharded: ShardedDatabases, gateway: Gateway, shop: Shop) -> None:
    customer, product = await shop.customer(), await shop.product(stock=100)
    order = await place(gateway, shop, customer, product)
    source = await gateway.sharding.shard_of_customer(customer.id)
    target = other(gateway, source)

    refused = await asyncio.to_thread(fanout, sharded, "shards", "move", str(customer.id))
    assert refused.returncode == 2
    moved = await asyncio.to_thread(
        fanout, sharded, "shards", "move", str(customer.id), "--to", target
    )
    assert moved.returncode == 0, moved.stderr
    assert f"{source} -> {target}: done, 1 order(s), paused" in moved.stdout
    again = await asyncio.to_thread(
        fanout, sharded, "shards", "move", str(customer.id), "--to", target
    )
    assert again.returncode == 1
    assert "already" in again.stderr
    listed = as_json(await asyncio.to_thread(fanout, sharded, "shards", "moves", "--json"))
    [mine] = [m for m in listed if m["customer_id"] == str(customer.id)]
    assert (mine["source"], mine["target"], mine["state"]) == (source, target, "done")
    resumed = await asyncio.to_thread(fanout, sharded, "shards", "move", "--resume")
    assert resumed.returncode == 0, resumed.stderr
    assert (await gateway.get_order(order.id)).id == order.id


async def test_an_order_follows_a_chain_of_moves_over_three_shards() -> None:
    three = {**SHARD_SERVERS, "gamma": SHARD_SERVERS["alpha"]}
    async with sharded_databases(shard_servers=three) as own, await connect_sharded(own) as gw:
        shop = Shop(gw)
        customer, product = await shop.customer(), await shop.product(stock=10)
        first = await gw.sharding.shard_of_customer(customer.id)
        second, third = (name for name in sorted(three) if name != first)
        order = await place(gw, shop, customer, product)
        async with await connect_sharded(own, pool_max_size=4) as stale:
            assert await stale.sharding.shard_of_customer(customer.id) == first  # cached
            for target in (second, third):
                moved = await gw.sharding.move_customer(customer.id, target)
                assert moved.move.state is MoveState.DONE
            # The id names the first shard: its tombstone names the second, whose names the third.
            assert (await stale.get_order(order.id)).id == order.id
            assert [o.id for o in (await stale.customer_orders(customer.id)).orders] == [order.id]
            assert await stale.sharding.shard_of_customer(customer.id) == third
        await assert_lives_on(gw, customer, third, [order.id])
        await assert_units_conserved(gw, {product.id: 10})


@pytest.mark.parametrize("crash_at", [MoveStep.TARGET_WRITTEN, MoveStep.SOURCE_DELETED])
async def test_no_request_reaches_the_copy_of_a_move_cut_off_before_the_source_committed(
    sharded: ShardedDatabases, gateway: Gateway, shop: Shop, crash_at: MoveStep
) -> None:
    """A customer moved away from its first shard and back, so that its order's id and a
    second process's cached directory both name the first shard; then a move to the second
    shard dies before the source's commit. Until and after it is resumed, every request goes to
    where the customer lives: an order placed through the stale cache, a transition routed by
    id and the report all see the source only, and nothing acknowledged is lost."""
    customer, product = await shop.customer(), await shop.product(stock=10)
    order = await place(gateway, shop, customer, product)
    first = await gateway.sharding.shard_of_customer(customer.id)
    second = other(gateway, first)
    async with await connect_sharded(sharded, pool_max_size=4) as stale:
        assert await stale.sharding.shard_of_customer(customer.id) == first  # cached
        for target in (second, first):
            assert (await gateway.sharding.move_customer(customer.id, target)).move.state is (
                MoveState.DONE
            )

        async def crash(step: MoveStep) -> None:
            if step is crash_at:
                raise Crash(step.value)

        with pytest.raises(Crash):
            await gateway.sharding.mover(crash).move(customer.id, second)
        # Cut off: the customer lives on the first shard, which the id and the cache name.
        placed = await stale.place_order(shop.order(customer, (product, 1)))
        confirmed = await gateway.transition(order.id, OrderStatus.CONFIRMED)
        assert confirmed.version == 2
        second_pool = gateway.sharding.shards[second]
        assert await rows_of(gateway, second, customer.id) == dict.fromkeys(
            [*CUSTOMER_TABLES, *ORDER_TABLES], 0
        )
        assert (
            await second_pool.fetchval(
                "SELECT count(*) FROM orders WHERE customer_id = $1", customer.id
            )
            == 0
        )
    unfinished = await move_records.unfinished_of(gateway.pool, customer.id)
    assert unfinished is not None
    assert (await gateway.sharding.mover().resume(unfinished)).state is MoveState.ROLLED_BACK
    assert (await gateway.get_order(placed.id)).status is OrderStatus.PENDING
    assert (await gateway.get_order(order.id)).version == 2
    await assert_lives_on(gateway, customer, first, [order.id, placed.id])
    await assert_units_conserved(gateway, {product.id: 10})


async def test_a_request_following_the_tombstone_waits_for_the_copy_to_commit(
    gateway: Gateway, shop: Shop
) -> None:
    """Between the source's commit and the target's, the customer's rows are on neither side
    to a reader; a transition that follows the tombstone then waits for the copy's commit and
    applies there (a not-found there would be a wrong answer for a live order)."""
    customer, product = await shop.customer(), await shop.product(stock=10)
    order = await place(gateway, shop, customer, product)
    source = await gateway.sharding.shard_of_customer(customer.id)
    target = other(gateway, source)
    target_pool = gateway.sharding.shards[target]
    waiting: list[asyncio.Task[Order]] = []

    async def one_waits_for_the_copy() -> bool:
        waiters = await target_pool.fetchval(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
            " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
        )
        return bool(waiters == 1)

    async def between_the_commits(step: MoveStep) -> None:
        if step is MoveStep.SOURCE_COMMITTED:
            waiting.append(asyncio.create_task(gateway.transition(order.id, OrderStatus.CONFIRMED)))
            await eventually(one_waits_for_the_copy)

    moved = await gateway.sharding.mover(between_the_commits).move(customer.id, target)
    assert moved.move.state is MoveState.DONE
    confirmed = await waiting[0]
    assert (confirmed.status, confirmed.version) == (OrderStatus.CONFIRMED, 2)
    await assert_lives_on(gateway, customer, target, [order.id])


async def test_a_late_resume_of_a_finished_move_keeps_the_decisions_of_a_customer_back_home(
    gateway: Gateway, shop: Shop
) -> None:
    """One operator lists a move cut off after the source's commit; another finishes it and
    moves the customer back; the first then resumes the move it listed. The source's
    reservation decisions of the orders that are there again stay (a sweep would otherwise find
    a live order without a decision and give its units back)."""
    customer, product = await shop.customer(), await shop.product(stock=10)
    order = await place(gateway, shop, customer, product)
    first = await gateway.sharding.shard_of_customer(customer.id)
    second = other(gateway, first)

    async def crash(step: MoveStep) -> None:
        if step is MoveStep.SOURCE_COMMITTED:
            raise Crash(step.value)

    with pytest.raises(Crash):
        await gateway.sharding.mover(crash).move(customer.id, second)
    listed = await move_records.unfinished_of(gateway.pool, customer.id)
    assert listed is not None
    assert (await gateway.sharding.move_customer(customer.id, first)).move.state is MoveState.DONE
    late = await gateway.sharding.mover().resume(listed)
    assert late.state is MoveState.DONE
    here = gateway.sharding.shards[first]
    assert (
        await here.fetchval(
            "SELECT decision FROM reservation_decisions WHERE order_id = $1", order.id
        )
        == "created"
    )
    await assert_lives_on(gateway, customer, first, [order.id])
    await assert_units_conserved(gateway, {product.id: 10})


async def test_one_process_at_a_time_moves_a_customer(gateway: Gateway, shop: Shop) -> None:
    customer, product = await shop.customer(), await shop.product(stock=10)
    order = await place(gateway, shop, customer, product)
    source = await gateway.sharding.shard_of_customer(customer.id)
    target = other(gateway, source)
    refused: list[str] = []

    async def meanwhile(step: MoveStep) -> None:
        if step is MoveStep.LOCKED:
            for attempt in (
                gateway.sharding.mover().move(customer.id, target),
                gateway.sharding.mover().resume(unfinished),
            ):
                with pytest.raises(MoveRefused) as second:
                    await attempt
                refused.append(str(second.value))

    unfinished = move_records.ShardMove(
        uuid.uuid4(), customer.id, source, target, MoveState.STARTED
    )
    moved = await gateway.sharding.mover(meanwhile).move(customer.id, target)
    assert moved.move.state is MoveState.DONE
    assert len(refused) == 2 and all("another process is moving" in why for why in refused)
    # Once it finished, the next move may start.
    assert (await gateway.sharding.move_customer(customer.id, source)).move.state is (
        MoveState.DONE
    )
    await assert_lives_on(gateway, customer, source, [order.id])


async def test_the_catalog_step_waits_for_a_retry_holding_the_moved_orders_key(
    gateway: Gateway, shop: Shop
) -> None:
    """A keyed placement committed its order on the source but not yet in the catalog (its
    reservation held there, naming the source) when the customer moved; its retry followed
    the tombstone and holds a reservation for the same key on the target. The catalog step
    cannot name the target for the first reservation while the second is held: it says why in
    the move's record and tries again, and completes once the retry gave its reservation back."""
    customer, product = await shop.customer(), await shop.product(stock=10)
    key = f"k-{uuid.uuid4()}"
    order = await gateway.place_order(shop.order(customer, (product, 1)), idempotency_key=key)
    source = await gateway.sharding.shard_of_customer(customer.id)
    target = other(gateway, source)
    await gateway.pool.execute(
        "UPDATE inventory_reservations SET status = 'held', expires_at = now() + interval '1 hour'"
        " WHERE order_id = $1",
        order.id,
    )
    retry = uuid.uuid4()
    await gateway.pool.execute(
        "INSERT INTO inventory_reservations (order_id, shard, customer_id, product_ids,"
        " quantities, expires_at, idempotency_key) VALUES ($1, $2, $3, $4, $5,"
        " now() + interval '1 hour', $6)",
        retry,
        target,
        customer.id,
        [product.id],
        [0],
        key,
    )

    async def the_move_waits() -> bool:
        waiting = await move_records.unfinished_of(gateway.pool, customer.id)
        return waiting is not None and "waits for a placement" in (waiting.last_error or "")

    async def the_retry_gives_up() -> None:
        await eventually(the_move_waits)
        await gateway.pool.execute(
            "UPDATE inventory_reservations SET status = 'released' WHERE order_id = $1", retry
        )

    releasing = asyncio.create_task(the_retry_gives_up())
    moved = await gateway.sharding.move_customer(customer.id, target)
    await releasing
    assert moved.move.state is MoveState.DONE
    assert (
        await gateway.pool.fetchval(
            "SELECT shard FROM inventory_reservations WHERE order_id = $1", order.id
        )
        == target
    )
    await assert_lives_on(gateway, customer, target, [order.id])


def scanned_whole(plan: Any) -> set[str]:
    """The tables a plan (``EXPLAIN (FORMAT JSON)``'s) reads with a sequential scan."""
    found: set[str] = set()
    nodes = [plan[0]["Plan"]]
    while nodes:
        node = nodes.pop()
        if node["Node Type"] == "Seq Scan":
            found.add(node["Relation Name"])
        nodes.extend(node.get("Plans", []))
    return found


async def test_the_pause_finds_the_customers_rows_by_index(gateway: Gateway, shop: Shop) -> None:
    """The pause holds the source's relay horizon for every customer of the shard: what it reads
    and deletes must not scan the shard's whole tables (sequential scans are switched off, so
    one left in a plan means no index serves it). The addresses' delete has the foreign keys of
    orders.billing_address_id and shipping_address_id check each address, with the query
    PostgreSQL's referential trigger runs."""
    customer, product = await shop.customer(), await shop.product(stock=10)
    await place(gateway, shop, customer, product)
    source = await gateway.sharding.shard_of_customer(customer.id)
    order_ids = [
        row["id"]
        for row in await gateway.sharding.shards[source].fetch(
            "SELECT id FROM orders WHERE customer_id = $1", customer.id
        )
    ]
    statements: dict[str, tuple[str, tuple[Any, ...]]] = {
        "move_read_customer": (query("move_read_customer"), (customer.id, order_ids)),
        "move_delete_customer": (
            query("move_delete_customer"),
            (customer.id, order_ids, other(gateway, source), uuid.uuid4(), "{}"),
        ),
        "move_delete_addresses_and_customer": (
            query("move_delete_addresses_and_customer"),
            (customer.id,),
        ),
    }
    for column in ("billing_address_id", "shipping_address_id"):
        statements[f"orders.{column} check"] = (
            f"SELECT 1 FROM ONLY orders x WHERE {column} = $1 FOR KEY SHARE OF x",
            (uuid.uuid4(),),
        )
    scans: dict[str, set[str]] = {}
    async with gateway.sharding.shards[source].acquire() as connection, connection.transaction():
        await connection.execute("SET LOCAL enable_seqscan = off")
        for name, (statement, args) in statements.items():
            plan = await connection.fetchval(f"EXPLAIN (FORMAT JSON) {statement}", *args)
            scans[name] = scanned_whole(json.loads(plan) if isinstance(plan, str) else plan)
    assert {name: found for name, found in scans.items() if found} == {}


async def test_moves_need_no_spare_catalog_connection(sharded: ShardedDatabases) -> None:
    """The lock of a customer's moves is held on a session of its own: two moves at once in a
    process whose pools have one connection each both finish."""
    async with await connect_sharded(sharded, pool_max_size=1) as tiny:
        shop = Shop(tiny)
        product = await shop.product(stock=10)
        customers = [await shop.customer() for _ in range(2)]
        for customer in customers:
            await place(tiny, shop, customer, product)
        moves = [
            tiny.sharding.move_customer(
                customer.id, other(tiny, await tiny.sharding.shard_of_customer(customer.id))
            )
            for customer in customers
        ]
        results = await asyncio.wait_for(asyncio.gather(*moves), timeout=60)
        assert [result.move.state for result in results] == [MoveState.DONE] * 2


async def test_a_cancelled_move_lets_go_of_the_customer(
    sharded: ShardedDatabases, gateway: Gateway, shop: Shop
) -> None:
    """A move cancelled while it pauses the customer (a caller's timeout) rolls back and leaves
    no lock behind: another process moves the customer next."""
    customer, product = await shop.customer(), await shop.product(stock=10)
    order = await place(gateway, shop, customer, product)
    source = await gateway.sharding.shard_of_customer(customer.id)
    target = other(gateway, source)
    paused = asyncio.Event()

    async def hang(step: MoveStep) -> None:
        if step is MoveStep.LOCKED:
            paused.set()
            await asyncio.Event().wait()

    moving = asyncio.create_task(gateway.sharding.mover(hang).move(customer.id, target))
    await paused.wait()
    moving.cancel()
    with pytest.raises(asyncio.CancelledError):
        await moving
    async with await connect_sharded(sharded) as elsewhere:
        moved = await elsewhere.sharding.move_customer(customer.id, target)
    assert moved.move.state is MoveState.DONE
    await assert_lives_on(gateway, customer, target, [order.id])


async def test_a_request_finishes_the_copy_of_a_mover_that_died_at_its_commit_point(
    gateway: Gateway, shop: Shop
) -> None:
    """The mover dies between the source's commit and the copy's: the first request that
    follows the tombstone writes the copy from it, so acknowledged orders keep answering
    before anyone resumes the move; the resumption then finishes the catalog's step."""
    customer, product = await shop.customer(), await shop.product(stock=10)
    key = f"k-{uuid.uuid4()}"
    order = await gateway.place_order(shop.order(customer, (product, 1)), idempotency_key=key)
    source = await gateway.sharding.shard_of_customer(customer.id)
    target = other(gateway, source)

    async def crash(step: MoveStep) -> None:
        if step is MoveStep.SOURCE_COMMITTED:
            raise Crash(step.value)

    with pytest.raises(Crash):
        await gateway.sharding.mover(crash).move(customer.id, target)
    assert (await gateway.get_order(order.id)).id == order.id
    assert [o.id for o in (await gateway.customer_orders(customer.id)).orders] == [order.id]
    again = await gateway.place_order(shop.order(customer, (product, 1)), idempotency_key=key)
    assert again.id == order.id
    unfinished = await move_records.unfinished_of(gateway.pool, customer.id)
    assert unfinished is not None
    assert (await gateway.sharding.mover().resume(unfinished)).state is MoveState.DONE
    await assert_lives_on(gateway, customer, target, [order.id])
    await assert_units_conserved(gateway, {product.id: 10})


async def test_a_stalled_copy_answers_its_customer_customer_moving_and_holds_no_one_else(
    gateway: Gateway, shop: Shop, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A mover stalled between the two commits: a request of the moving customer waits a
    bounded time for the copy, then answers CustomerMoving (409, retry); another customer of
    the target places orders meanwhile."""
    monkeypatch.setattr(mover_module, "ARRIVAL_WAIT", 0.3)
    customer, product = await shop.customer(), await shop.product(stock=10)
    order = await place(gateway, shop, customer, product)
    source = await gateway.sharding.shard_of_customer(customer.id)
    target = other(gateway, source)
    bystander = (await customers_on_each_shard(gateway, shop))[target]
    stalled, go_on = asyncio.Event(), asyncio.Event()

    async def stall(step: MoveStep) -> None:
        if step is MoveStep.SOURCE_COMMITTED:
            stalled.set()
            await go_on.wait()

    moving = asyncio.create_task(gateway.sharding.mover(stall).move(customer.id, target))
    await stalled.wait()
    try:
        with pytest.raises(CustomerMoving) as busy:
            await gateway.transition(order.id, OrderStatus.CONFIRMED)
        assert problem_of(busy.value).status == 409
        placed = await place(gateway, shop, bystander, product)
        assert (await gateway.get_order(placed.id)).status is OrderStatus.PENDING
    finally:
        go_on.set()
    assert (await moving).move.state is MoveState.DONE
    assert (await gateway.transition(order.id, OrderStatus.CONFIRMED)).version == 2


async def test_a_pause_lets_through_a_placement_that_holds_the_relay_back(
    sharded: ShardedDatabases, gateway: Gateway, shop: Shop, relay: ShardedRelay
) -> None:
    """A placement of the moving customer took its transaction id (its key claim) before the
    pause, and an event of the customer committed after that id; the placement's next
    statement (its order's foreign key) then waits for the pause's lock of the customer. The
    relay cannot pass the placement, so the pause would wait for that event until its timeout;
    it starts over instead, the placement goes through, and the move completes."""
    customer, product = await shop.customer(), await shop.product(stock=10)
    order = await place(gateway, shop, customer, product)
    source = await gateway.sharding.shard_of_customer(customer.id)
    target = other(gateway, source)
    pool = gateway.sharding.shards[source]

    async def delivered() -> bool:
        left = await pool.fetchval(query("move_undelivered_events"), [str(order.id)])
        return bool(left == 0)

    await eventually(delivered)
    placement = await asyncpg.connect(sharded.shards[source])
    try:
        async with placement.transaction():
            await placement.fetchval("SELECT pg_current_xact_id()")  # takes its id first
            await gateway.transition(order.id, OrderStatus.CONFIRMED)  # committed after it
            waiting: list[asyncio.Task[object]] = []

            async def then_its_foreign_key(step: MoveStep) -> None:
                if step is MoveStep.LOCKED and not waiting:
                    waiting.append(
                        asyncio.create_task(
                            placement.fetchval(
                                "SELECT 1 FROM customers WHERE id = $1 FOR KEY SHARE", customer.id
                            )
                        )
                    )

            mover = gateway.sharding.mover(then_its_foreign_key)
            moving = asyncio.create_task(mover.move(customer.id, target, pause_timeout=5.0))
            await eventually(lambda: bool(waiting) and waiting[0].done())
        moved = await moving
    finally:
        await placement.close()
    assert moved.move.state is MoveState.DONE, moved.move.last_error
    assert moved.pause_seconds is not None and moved.pause_seconds < 5.0
    await assert_lives_on(gateway, customer, target, [order.id])


async def test_an_address_added_while_the_customer_moves_lands_with_it(
    gateway: Gateway, shop: Shop
) -> None:
    """An address added while the pause holds the customer waits for it, then lands where the
    customer is (never a foreign key error for a customer that exists)."""
    customer, product = await shop.customer(), await shop.product(stock=10)
    order = await place(gateway, shop, customer, product)
    source = await gateway.sharding.shard_of_customer(customer.id)
    target = other(gateway, source)
    source_pool = gateway.sharding.shards[source]
    adding: list[asyncio.Task[Any]] = []

    async def someone_waits_for_a_lock() -> bool:
        waiting = await source_pool.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
            " AND datname = current_database()"
        )
        return bool(waiting)

    async def while_paused(step: MoveStep) -> None:
        if step is MoveStep.LOCKED and not adding:
            address = {
                "address_type": "shipping",
                "street_address": "2 Moving Rd",
                "city": "Springfield",
                "postal_code": "1234",
                "country": "US",
            }
            adding.append(asyncio.create_task(gateway.add_address(customer.id, address)))
            await eventually(someone_waits_for_a_lock)

    moved = await gateway.sharding.mover(while_paused).move(customer.id, target)
    assert moved.move.state is MoveState.DONE
    address = await adding[0]
    assert address.customer_id == customer.id
    await assert_lives_on(gateway, customer, target, [order.id])
    lives_on = gateway.sharding.shards[target]
    assert await lives_on.fetchval("SELECT count(*) FROM addresses WHERE id = $1", address.id) == 1


async def test_the_resume_command_finishes_a_done_moves_last_step(
    sharded: ShardedDatabases, gateway: Gateway, shop: Shop
) -> None:
    """A mover that died right after the catalog's step leaves the source keeping the
    customer's rows in its tombstone; `fanout shards move --resume` deletes them."""
    customer, product = await shop.customer(), await shop.product(stock=10)
    order = await place(gateway, shop, customer, product)
    source = await gateway.sharding.shard_of_customer(customer.id)
    target = other(gateway, source)

    async def crash(step: MoveStep) -> None:
        if step is MoveStep.CATALOG_COMMITTED:
            raise Crash(step.value)

    with pytest.raises(Crash):
        await gateway.sharding.mover(crash).move(customer.id, target)
    kept = "SELECT document IS NOT NULL FROM moved_customers WHERE customer_id = $1"
    source_pool = gateway.sharding.shards[source]
    assert await source_pool.fetchval(kept, customer.id) is True
    resumed = await asyncio.to_thread(
        fanout, sharded, "shards", "move", str(customer.id), "--resume"
    )
    assert resumed.returncode == 0, resumed.stderr
    assert f"customer {customer.id} {source} -> {target}: done" in resumed.stdout
    assert await source_pool.fetchval(kept, customer.id) is False
    await assert_lives_on(gateway, customer, target, [order.id])


async def test_the_pause_starts_over_only_for_an_older_writer_it_holds_up(
    sharded: ShardedDatabases, gateway: Gateway, shop: Shop
) -> None:
    """A writer that took its id after the pause's holds back no event the pause waits for
    (those are late events): waiting for it would not help, and starting over for it would
    let a customer that places orders steadily never move. One that took its id before may
    hold the relay back below those events: the pause starts over for it."""
    customer = await shop.customer()
    url = sharded.shards[await gateway.sharding.shard_of_customer(customer.id)]
    older, pause, younger = [await asyncpg.connect(url) for _ in range(3)]
    waits = "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
    key_share = "SELECT 1 FROM customers WHERE id = $1 FOR KEY SHARE"
    try:
        for connection in (older, pause, younger):
            await connection.execute("BEGIN")
        await older.fetchval("SELECT pg_current_xact_id()")
        assert await move_rows.lock_customer(pause, customer.id) == []
        await younger.fetchval("SELECT pg_current_xact_id()")
        blocked = [asyncio.create_task(younger.fetchval(key_share, customer.id))]

        async def waiting(count: int) -> bool:
            found = await pause.fetchval(waits + " AND datname = current_database()")
            return bool(found == count)

        await eventually(lambda: waiting(1))
        assert not await move_rows.blocks_writers(pause)
        blocked.append(asyncio.create_task(older.fetchval(key_share, customer.id)))
        await eventually(lambda: waiting(2))
        assert await move_rows.blocks_writers(pause)
        await pause.execute("ROLLBACK")
        await asyncio.gather(*blocked)
    finally:
        for connection in (older, pause, younger):
            await connection.close()


async def test_a_copy_written_from_the_tombstone_keeps_a_key_the_target_took_meanwhile(
    gateway: Gateway, shop: Shop
) -> None:
    """Between a cut-off move's source commit and the copy's write, another customer of the
    target used the same idempotency key: the copy still lands (the target's key stays that
    request's), and the moved order answers."""
    customer, product = await shop.customer(), await shop.product(stock=10)
    key = f"k-{uuid.uuid4()}"
    order = await gateway.place_order(shop.order(customer, (product, 1)), idempotency_key=key)
    source = await gateway.sharding.shard_of_customer(customer.id)
    target = other(gateway, source)
    neighbour = (await customers_on_each_shard(gateway, shop))[target]

    async def crash(step: MoveStep) -> None:
        if step is MoveStep.SOURCE_COMMITTED:
            raise Crash(step.value)

    with pytest.raises(Crash):
        await gateway.sharding.mover(crash).move(customer.id, target)
    theirs = await gateway.place_order(shop.order(neighbour, (product, 1)), idempotency_key=key)
    assert (await gateway.get_order(order.id)).id == order.id
    unfinished = await move_records.unfinished_of(gateway.pool, customer.id)
    assert unfinished is not None
    assert (await gateway.sharding.mover().resume(unfinished)).state is MoveState.DONE
    await assert_lives_on(gateway, customer, target, [order.id])
    assert (await gateway.get_order(theirs.id)).customer_id == neighbour.id
