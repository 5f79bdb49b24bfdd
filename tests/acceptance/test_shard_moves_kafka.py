"""A Kafka consumer sees each order's versions in order across customer moves (guarantee 17),
against three real PostgreSQL servers (the catalog, the shards ``alpha`` and ``beta``) and a
real Kafka broker.

The sharded relay delivers every database's outbox to Kafka while customers keep placing
orders and moving them through their statuses, and several of them are moved to the other
shard and back. An order's versions before a move are in the source's outbox, those after it
in the target's, each relayed on its own; only the move's wait for delivery (the source's
events past every sink before the target writes) keeps a consumer from seeing a target
version before a source one. So across each move a slow transaction of another request runs
on the source, holding its relay back: the versions the customer's orders got just before the
move are still undelivered when it begins, and their next versions are written on the target
just after it. A consumer then reads the orders' topic from the start and must
see, for every order, versions 1..N in order (taking each event once, as a consumer
deduplicating by event id does: the relay may publish an event again, never out of order),
N being the order's version in PostgreSQL.
"""

from __future__ import annotations

import asyncio
import itertools
import random
import uuid
from collections.abc import AsyncIterator, Iterable
from typing import Any

import asyncpg
import pytest

from adapters.kafka import KafkaSink
from gateway import Customer, Gateway
from gateway.configuration.settings import Settings
from gateway.postgres import outbox
from gateway.sharding.move_rules import MoveState
from gateway.sharding.mover import MoveResult
from gateway.sharding.relays import ShardedRelay
from support.eventually import eventually
from support.sharding import ShardedDatabases, connect_sharded
from support.shop import Shop
from support.stores import drop_namespace, make_sink, store_settings
from tests.acceptance.test_kafka import consume
from tests.acceptance.test_shard_moves import other, place, step
from tests.relay_settings import FAST

SINK = "kafka"
CUSTOMERS_PER_SHARD = 3
MOVED_PER_SHARD = 2
ROUNDS = 2
"""Each moved customer goes to the other shard and, the next round, back."""
WRITERS = 6
FRESH = 2
"""Orders placed for a customer just before each of its moves (and moved on just after it), and
as many of its earlier orders moved on just before and after it."""
SLOW_TRANSACTION_SECONDS = 1.0
"""How long a transaction of another request on the source runs across each move: until it
ends, the source's relay delivers nothing committed after it began (it reads below the oldest
running transaction)."""


@pytest.fixture(scope="module")
async def gateway(sharded: ShardedDatabases) -> AsyncIterator[Gateway]:
    async with await connect_sharded(sharded) as connected:
        yield connected


@pytest.fixture
def tag() -> str:
    """The namespace of this test's topics."""
    return uuid.uuid4().hex[:10]


@pytest.fixture
async def kafka(tag: str) -> AsyncIterator[KafkaSink]:
    """The sink's topics, created up front and deleted afterwards (the catalog's reservation
    events' among them)."""
    sink = make_sink(SINK, tag, topics={"reservation": f"{tag}.reservation"})
    assert isinstance(sink, KafkaSink)
    await sink.start()
    try:
        yield sink
    finally:
        try:
            await drop_namespace(sink)
        finally:
            await sink.close()


@pytest.fixture
async def relay(
    sharded: ShardedDatabases, gateway: Gateway, tag: str, kafka: KafkaSink
) -> AsyncIterator[ShardedRelay]:
    """The sharded relay delivering every database's outbox to Kafka. Its positions are
    forgotten afterwards: a registered sink that stops moving would hold every later move's
    pause until it timed out."""
    sinks = Settings.model_validate(
        {"postgres": {"url": sharded.catalog}, "sinks": {SINK: store_settings(SINK, tag)}}
    ).sinks
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
            await pool.execute("DELETE FROM relay_positions WHERE sink = $1", SINK)


def versions_seen(records: Iterable[Any]) -> tuple[dict[str, list[int]], int]:
    """Each key's versions in the order a consumer reads them, each event taken once (by its
    ``event_id`` header); and how many records were repeats."""
    seen: set[bytes] = set()
    versions: dict[str, list[int]] = {}
    repeats = 0
    for record in records:
        headers = dict(record.headers)
        if headers["event_id"] in seen:
            repeats += 1
            continue
        seen.add(headers["event_id"])
        versions.setdefault(record.key.decode(), []).append(int(headers["version"]))
    return versions, repeats


async def customers_by_shard(gateway: Gateway, shop: Shop) -> dict[str, list[Customer]]:
    """``CUSTOMERS_PER_SHARD`` new customers on each shard."""
    found: dict[str, list[Customer]] = {name: [] for name in gateway.sharding.shards}
    while any(len(placed) < CUSTOMERS_PER_SHARD for placed in found.values()):
        customer = await shop.customer()
        placed = found[await gateway.sharding.shard_of_customer(customer.id)]
        if len(placed) < CUSTOMERS_PER_SHARD:
            placed.append(customer)
    return found


async def slow_transaction(pool: asyncpg.Pool, opened: asyncio.Event) -> None:
    """A transaction with its id taken, as a slow request of another customer runs, open for
    ``SLOW_TRANSACTION_SECONDS``; ``opened`` is set once it holds the shard's relay back."""
    async with pool.acquire() as connection, connection.transaction():
        await connection.fetchval("SELECT pg_current_xact_id()")
        opened.set()
        await asyncio.sleep(SLOW_TRANSACTION_SECONDS)


async def delivered_everywhere(gateway: Gateway) -> bool:
    """Whether the Kafka sink has no backlog on any database."""
    for pool in (gateway.pool, *gateway.sharding.shards.values()):
        async with pool.acquire() as connection:
            if any(b.events for b in await outbox.backlog(connection) if b.sink == SINK):
                return False
    return True


async def orders_written_on_several_shards(gateway: Gateway, order_ids: set[str]) -> set[str]:
    """The orders whose events are in the outboxes of more than one shard."""
    seen: dict[str, int] = {}
    for pool in gateway.sharding.shards.values():
        for row in await pool.fetch(
            "SELECT DISTINCT aggregate_id FROM outbox"
            " WHERE aggregate_type = 'order' AND aggregate_id = ANY($1::text[])",
            list(order_ids),
        ):
            seen[row["aggregate_id"]] = seen.get(row["aggregate_id"], 0) + 1
    return {order_id for order_id, shards in seen.items() if shards > 1}


async def test_a_kafka_consumer_sees_each_order_s_versions_in_order_across_moves(
    gateway: Gateway, relay: ShardedRelay, kafka: KafkaSink
) -> None:
    shop = Shop(gateway)
    product = await shop.product(stock=1_000_000)
    by_shard = await customers_by_shard(gateway, shop)
    everyone = [customer for placed in by_shard.values() for customer in placed]
    orders = {
        c.id: [(await place(gateway, shop, c, product)).id for _ in range(3)] for c in everyone
    }
    moved = [customer for placed in by_shard.values() for customer in placed[:MOVED_PER_SHARD]]
    rng = random.Random(17)
    moving: list[Customer] = []  # the customer being moved now, last
    finished = asyncio.Event()

    async def writer() -> None:
        """Place and move on orders, most of them the customer being moved."""
        for count in itertools.count():
            if finished.is_set() and count >= 10:
                return
            customer = moving[-1] if moving and rng.random() < 0.6 else rng.choice(everyone)
            if rng.random() < 0.25:
                orders[customer.id].append((await place(gateway, shop, customer, product)).id)
            else:
                await step(gateway, rng.choice(orders[customer.id]), rng)

    async def move(customer: Customer) -> MoveResult:
        """Move ``customer`` to the other shard while a slow transaction on its shard holds
        the relay back: the versions its orders get just before the move are still
        undelivered when it starts, and those they get just after it are written on the
        target."""
        moving.append(customer)
        source = await gateway.sharding.shard_of_customer(customer.id)
        opened = asyncio.Event()
        slow = asyncio.create_task(slow_transaction(gateway.sharding.shards[source], opened))
        await opened.wait()
        fresh = [(await place(gateway, shop, customer, product)).id for _ in range(FRESH)]
        earlier = rng.sample(orders[customer.id], FRESH)
        for order_id in earlier:
            await step(gateway, order_id, rng)
        result = await gateway.sharding.move_customer(
            customer.id, other(gateway, source), pause_timeout=10
        )
        for order_id in fresh + earlier:
            await step(gateway, order_id, rng)
        orders[customer.id] += fresh
        await slow
        return result

    async def mover() -> list[MoveResult]:
        try:
            return [await move(customer) for _ in range(ROUNDS) for customer in moved]
        finally:
            finished.set()

    writers = [asyncio.create_task(writer()) for _ in range(WRITERS)]
    try:
        results = await mover()
    finally:
        await asyncio.gather(*writers)

    assert [r.move.state for r in results] == [MoveState.DONE] * len(results), [
        r.move.last_error for r in results
    ]
    await eventually(lambda: delivered_everywhere(gateway), within=120)
    records = await consume(kafka.topic_for("order") or "")
    seen, repeats = versions_seen(records)
    all_orders = {order_id for placed in orders.values() for order_id in placed}
    wrong: dict[str, tuple[list[int], int]] = {}
    for order_id in all_orders:
        version = (await gateway.get_order(order_id)).version
        versions = seen.get(str(order_id), [])
        if versions != list(range(1, version + 1)):
            wrong[str(order_id)] = (versions, version)
    straddling = await orders_written_on_several_shards(gateway, {str(o) for o in all_orders})
    pauses = sorted(round((r.pause_seconds or 0) * 1000) for r in results)
    print(
        f"\n{len(results)} moves (pauses {pauses} ms) under {len(all_orders)} orders, "
        f"{len(straddling)} of them with versions written on both shards; "
        f"{len(records)} records read, {repeats} repeats; {len(wrong)} orders out of order"
    )
    first = dict(itertools.islice(wrong.items(), 5))
    assert wrong == {}, (
        f"{len(wrong)} orders out of order; (versions a consumer sees, version in PostgreSQL) "
        f"of the first: {first}"
    )
    # The moves came between versions of orders (at least the fresh orders of each move):
    # without that, the check above would prove nothing.
    assert len(straddling) >= FRESH * len(results)
