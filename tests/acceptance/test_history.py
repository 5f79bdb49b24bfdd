"""Every order's history: its stream over thousands of random lifecycles, the fold check
against the orders, the CLI, and the history's retention."""

from __future__ import annotations

import asyncio
import json
import random
from dataclasses import dataclass
from pathlib import Path

from gateway import Gateway, Order
from gateway.errors import GatewayError
from gateway.history.check import check_folds
from gateway.relay import upkeep
from support.api_process import start_fanout, write_config
from tests.acceptance.payment_support import notification
from tests.acceptance.relay_support import World

HAPPY_PATH = ["processing", "shipped", "delivered", "refunded"]


@dataclass(frozen=True)
class Ran:
    returncode: int
    stdout: str
    stderr: str


async def fanout(config: Path, *args: str) -> Ran:
    """``fanout --config CONFIG ARGS...`` run to its end."""
    process = await start_fanout(config, *args, stdout=asyncio.subprocess.PIPE)
    stdout, stderr = await process.communicate()
    assert process.returncode is not None
    return Ran(process.returncode, stdout.decode(), stderr.decode())


async def live_a_random_life(gateway: Gateway, order: Order, rng: random.Random) -> None:
    """Pay, fail, mismatch, redeliver, move along by hand or leave for the timeout."""
    life = rng.choice(["paid", "paid", "failed", "unpaid", "mismatch", "by_hand", "cancelled"])
    if life in {"paid", "mismatch"}:
        if life == "mismatch":
            await gateway.record_payment(notification(order, amount="0.01"))
        paid = notification(order)
        await gateway.record_payment(paid)
        if rng.random() < 0.3:
            await gateway.record_payment(paid)  # redelivered
        for status in HAPPY_PATH[: rng.randint(0, len(HAPPY_PATH))]:
            await gateway.transition(order.id, status)
    elif life == "failed":
        await gateway.record_payment(notification(order, "failed"))
    elif life == "by_hand":
        await gateway.transition(order.id, "confirmed")
        if rng.random() < 0.5:
            await gateway.record_payment(notification(order))
    elif life == "cancelled":
        await gateway.transition(order.id, "cancelled")
        if rng.random() < 0.5:
            await gateway.record_payment(notification(order))  # too late: refund


async def test_thousands_of_random_lifecycles_fold_to_their_orders(
    world: World, tmp_path: Path
) -> None:
    gateway, shop = world.gateway, world.shop
    rng = random.Random(2026)
    customers = [await shop.customer() for _ in range(8)]
    products = [await shop.product(stock=100_000) for _ in range(6)]
    semaphore = asyncio.Semaphore(16)

    async def one() -> Order:
        async with semaphore:
            lines = rng.sample(products, rng.randint(1, 3))
            order = await gateway.place_order(
                shop.order(rng.choice(customers), *[(p, rng.randint(1, 4)) for p in lines])
            )
            await live_a_random_life(gateway, order, rng)
            return order

    orders = await asyncio.gather(*(one() for _ in range(2_500)))
    await gateway.pool.execute("UPDATE orders SET payment_due_at = now() WHERE status = 'pending'")
    assert await upkeep.expire_unpaid_orders(gateway.pool) > 0
    units_sold = await gateway.pool.fetchval(
        """SELECT coalesce(sum(quantity), 0) FROM order_items
           JOIN orders ON orders.id = order_items.order_id WHERE status <> 'cancelled'"""
    )
    assert await gateway.pool.fetchval("SELECT sum(inventory_quantity) FROM products") == (
        6 * 100_000 - units_sold
    )

    check = await check_folds(gateway.pool, batch_size=300)

    assert check.clean, check.as_json()
    assert (check.checked, check.matched) == (len(orders), len(orders))
    statuses = {row["status"] for row in await gateway.pool.fetch("SELECT status FROM orders")}
    assert {"confirmed", "cancelled", "refunded"} <= statuses

    config = write_config(
        tmp_path, {"postgres": {"url": world.settings.postgres.url.get_secret_value()}}
    )
    verified = await fanout(config, "verify", "--events", "--json")
    assert verified.returncode == 0, verified.stderr
    assert json.loads(verified.stdout)["matched"] == len(orders)

    # An order changed behind the event store's back is reported, naming what differs.
    tampered = orders[0]
    status = await gateway.pool.fetchval("SELECT status FROM orders WHERE id = $1", tampered.id)
    await gateway.pool.execute(
        "UPDATE orders SET status = $2, version = version + 1 WHERE id = $1",
        tampered.id,
        "delivered" if status == "shipped" else "shipped",
    )
    differing = await fanout(config, "verify", "--events", "--json")
    assert differing.returncode == 1
    report = json.loads(differing.stdout)
    assert report["different"] == 1 and report["clean"] is False
    [example] = report["examples"]
    assert example["order_id"] == str(tampered.id)
    assert "status" in example["problem"] and "version" in example["problem"]


async def test_fanout_events_prints_the_stream_in_version_order(
    world: World, tmp_path: Path
) -> None:
    order = await world.gateway.place_order(
        world.shop.order(await world.shop.customer(), (await world.shop.product(), 1))
    )
    await world.gateway.record_payment(notification(order, "failed"))
    config = write_config(
        tmp_path, {"postgres": {"url": world.settings.postgres.url.get_secret_value()}}
    )

    as_json = await fanout(config, "events", str(order.id), "--json")
    table = await fanout(config, "events", str(order.id))
    unknown = await fanout(config, "events", "00000000-0000-0000-0000-000000000007")
    malformed = await fanout(config, "events", "seven")

    assert as_json.returncode == 0, as_json.stderr
    assert [(e["version"], e["event_type"]) for e in json.loads(as_json.stdout)] == [
        (1, "order.placed"),
        (2, "payment.failed"),
        (3, "inventory.released"),
        (4, "order.cancelled"),
    ]
    assert table.returncode == 0
    assert "inventory.released" in table.stdout and "payment_failed" in table.stdout
    assert unknown.returncode == 1 and "not found" in unknown.stderr
    assert malformed.returncode == 1 and "order_id" in malformed.stderr


async def test_the_history_outlives_the_outbox_and_keeps_to_its_own_retention(
    world: World,
) -> None:
    gateway = world.gateway
    [old, recent] = [
        await gateway.place_order(
            world.shop.order(await world.shop.customer(), (await world.shop.product(), 1))
        )
        for _ in range(2)
    ]
    await gateway.record_payment(notification(old))
    await gateway.pool.execute("DELETE FROM outbox")  # delivered and pruned long ago
    await gateway.pool.execute(
        "UPDATE order_events SET occurred_at = now() - interval '40 days' WHERE stream_id = $1",
        old.id,
    )
    assert len(await gateway.order_events(old.id)) == 3

    assert await upkeep.prune_history(gateway.pool, retention_days=30) == 3

    assert await gateway.order_events(old.id) == []
    assert [e.event_type for e in await gateway.order_events(recent.id)] == ["order.placed"]
    check = await check_folds(gateway.pool)
    assert (check.without_history, check.matched, check.clean) == (1, 1, True)


async def test_an_order_event_that_cannot_be_stored_fails_its_whole_write(world: World) -> None:
    order = await world.gateway.place_order(
        world.shop.order(await world.shop.customer(), (await world.shop.product(), 1))
    )
    # A stray row at the version the next event takes: the event store refuses the event, and
    # the transition (with its outbox row) rolls back with it.
    await world.gateway.pool.execute(
        """INSERT INTO order_events (stream_id, version, event_id, event_type, payload, occurred_at)
           VALUES ($1, 2, gen_random_uuid(), 'order.status_changed', '{}', now())""",
        order.id,
    )
    try:
        await world.gateway.transition(order.id, "confirmed")
    except GatewayError:
        pass
    except Exception as error:  # asyncpg's UniqueViolationError
        assert "order_events_pkey" in str(error)
    assert (await world.gateway.get_order(order.id)).version == 1
    assert len(await world.shop.events_of(order.id)) == 1
