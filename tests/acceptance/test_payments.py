"""The order saga over a real PostgreSQL: payments, their compensation, the payment timeout,
and the races between them."""

from __future__ import annotations

import asyncio
import random
from uuid import UUID

import pytest

from adapters.base import Sink
from adapters.memory import MemorySink
from adapters.readback import ReadBack
from gateway import Gateway, Order
from gateway.errors import Conflict, NotFound, ValidationError
from gateway.operations.verify import verify_orders
from gateway.payments.decision import PaymentOutcome
from gateway.relay import upkeep
from support.eventually import eventually
from support.shop import Shop
from tests.acceptance.payment_support import notification
from tests.acceptance.relay_support import World


async def event_types(gateway: Gateway, order_id: UUID) -> list[str]:
    return [event.event_type for event in await gateway.order_events(order_id)]


async def make_overdue(gateway: Gateway, *orders: Order) -> None:
    """Move the orders' payment deadline into the past (as if the timeout had elapsed)."""
    await gateway.pool.execute(
        "UPDATE orders SET payment_due_at = now() - interval '1 second' WHERE id = ANY($1)",
        [order.id for order in orders],
    )


async def payment_rows(gateway: Gateway, order_id: UUID) -> list[tuple[str, str]]:
    rows = await gateway.pool.fetch(
        "SELECT payment_id, outcome FROM payments WHERE order_id = $1 ORDER BY received_at",
        order_id,
    )
    return [(row["payment_id"], row["outcome"]) for row in rows]


async def test_a_placed_order_awaits_its_payment_until_the_timeout(
    gateway: Gateway, shop: Shop
) -> None:
    customer, product = await shop.customer(), await shop.product()
    order = await gateway.place_order(shop.order(customer, (product, 1)))
    assert order.payment_status == "awaiting"
    assert order.payment_due_at is not None
    seconds = (order.payment_due_at - order.created_at).total_seconds()
    assert seconds == pytest.approx(gateway.settings.orders.payment_timeout_seconds, abs=1)


async def test_with_payment_off_orders_wait_without_a_deadline(world: World) -> None:
    settings = world.settings.model_copy(
        update={
            "orders": world.settings.orders.model_copy(update={"payment_timeout_seconds": None})
        }
    )
    async with await Gateway.connect(settings) as gateway:
        shop = Shop(gateway)
        order = await gateway.place_order(
            shop.order(await shop.customer(), (await shop.product(), 1))
        )
        assert (order.payment_status, order.payment_due_at) == (None, None)
        await gateway.pool.execute("UPDATE orders SET created_at = now() - interval '1 year'")
        assert await upkeep.expire_unpaid_orders(gateway.pool) == 0
        assert (await gateway.get_order(order.id)).status == "pending"
        # A payment still confirms it, for services that take payments with payment off.
        recorded = await gateway.record_payment(notification(order))
        assert (recorded.outcome, recorded.order.status) == (PaymentOutcome.CONFIRMED, "confirmed")


async def test_a_succeeded_payment_confirms_the_order_in_every_store(
    world: World, stores: tuple[str, dict[str, Sink]]
) -> None:
    _, sinks = stores
    customer, product = await world.shop.customer(), await world.shop.product(stock=5)
    order = await world.gateway.place_order(world.shop.order(customer, (product, 2)))

    recorded = await world.gateway.record_payment(notification(order))

    assert recorded.outcome is PaymentOutcome.CONFIRMED and not recorded.replayed
    assert (recorded.order.status, recorded.order.payment_status) == ("confirmed", "paid")
    assert recorded.order.version == 3
    assert await event_types(world.gateway, order.id) == [
        "order.placed",
        "payment.processed",
        "order.confirmed",
    ]
    assert await world.shop.stock(product) == 3
    await world.drain(*sinks.values())
    for name, sink in sinks.items():
        assert isinstance(sink, ReadBack)
        drift = await verify_orders(world.gateway.pool, name, sink, [str(order.id)])
        assert drift.clean and drift.matched == 1, (name, drift.counts())
    mongo = sinks["mongodb"]
    document = await mongo.collection.find_one({"order_id": str(order.id)})  # type: ignore[attr-defined]
    assert (document["status"], document["payment_status"], document["version"]) == (
        "confirmed",
        "paid",
        3,
    )


async def test_a_failed_payment_cancels_the_order_and_returns_its_units(
    gateway: Gateway, shop: Shop
) -> None:
    customer, product, other = (
        await shop.customer(),
        await shop.product(stock=10),
        await shop.product(stock=4),
    )
    order = await gateway.place_order(shop.order(customer, (product, 3), (other, 4)))
    assert (await shop.stock(product), await shop.stock(other)) == (7, 0)

    recorded = await gateway.record_payment(notification(order, "failed"))

    assert recorded.outcome is PaymentOutcome.CANCELLED
    assert (recorded.order.status, recorded.order.payment_status) == ("cancelled", "failed")
    assert (await shop.stock(product), await shop.stock(other)) == (10, 4)
    history = await gateway.order_events(order.id)
    assert [(e.event_type, e.version) for e in history] == [
        ("order.placed", 1),
        ("payment.failed", 2),
        ("inventory.released", 3),
        ("order.cancelled", 4),
    ]
    released = history[2].payload["released"]
    assert sorted((line["product_id"], line["quantity"]) for line in released) == sorted(
        [(str(product.id), 3), (str(other.id), 4)]
    )
    assert history[3].payload["reason"] == "payment_failed"
    assert history[1].payload["payment"]["outcome"] == "cancelled"


async def test_the_timeout_cancels_unpaid_orders_and_a_late_payment_is_flagged_for_refund(
    world: World,
) -> None:
    gateway, shop = world.gateway, world.shop
    customer, product = await shop.customer(), await shop.product(stock=20)
    overdue = [await gateway.place_order(shop.order(customer, (product, 2))) for _ in range(3)]
    on_time = await gateway.place_order(shop.order(customer, (product, 1)))
    await make_overdue(gateway, *overdue)
    assert await shop.stock(product) == 13

    assert await upkeep.expire_unpaid_orders(gateway.pool, limit=2) == 3

    assert await shop.stock(product) == 19
    for order in overdue:
        cancelled = await gateway.get_order(order.id)
        assert (cancelled.status, cancelled.payment_status) == ("cancelled", "expired")
        assert await event_types(gateway, order.id) == [
            "order.placed",
            "payment.timed_out",
            "inventory.released",
            "order.cancelled",
        ]
    assert (await gateway.get_order(on_time.id)).status == "pending"
    assert await upkeep.expire_unpaid_orders(gateway.pool) == 0

    late = await gateway.record_payment(notification(overdue[0]))

    assert late.outcome is PaymentOutcome.REFUND_REQUIRED
    assert (late.order.status, late.order.payment_status) == ("cancelled", "refund_required")
    assert (await event_types(gateway, overdue[0].id))[-1] == "payment.refund_required"
    assert await payment_rows(gateway, overdue[0].id) == [(late.payment_id, "refund_required")]
    assert await shop.stock(product) == 19


async def test_the_relay_runs_the_timeout_sweeper(world: World) -> None:
    customer, product = await world.shop.customer(), await world.shop.product(stock=5)
    order = await world.gateway.place_order(world.shop.order(customer, (product, 5)))
    await make_overdue(world.gateway, order)
    relay = world.relay(MemorySink(), payment_sweep_interval_seconds=0.05)
    running = asyncio.create_task(relay.run())
    try:

        async def cancelled() -> bool:
            return (await world.gateway.get_order(order.id)).status == "cancelled"

        await eventually(cancelled, within=30)
    finally:
        relay.stop()
        await running
    assert await world.shop.stock(product) == 5


async def test_a_redelivered_payment_writes_nothing_again(gateway: Gateway, shop: Shop) -> None:
    order = await gateway.place_order(shop.order(await shop.customer(), (await shop.product(), 1)))
    paid = notification(order)
    first = await gateway.record_payment(paid)
    outbox_before = len(await shop.events_of(order.id))

    again = await asyncio.gather(*(gateway.record_payment(paid) for _ in range(8)))

    assert all(r.replayed and r.outcome is PaymentOutcome.CONFIRMED for r in again)
    assert all(r.order.version == first.order.version == 3 for r in again)
    assert len(await shop.events_of(order.id)) == outbox_before
    assert len(await gateway.order_events(order.id)) == 3
    assert await payment_rows(gateway, order.id) == [(paid["payment_id"], "confirmed")]
    with pytest.raises(Conflict, match="different amount"):
        await gateway.record_payment({**paid, "amount": "0.01"})


async def test_concurrent_first_deliveries_record_one_payment(gateway: Gateway, shop: Shop) -> None:
    order = await gateway.place_order(shop.order(await shop.customer(), (await shop.product(), 1)))
    paid = notification(order)

    results = await asyncio.gather(*(gateway.record_payment(paid) for _ in range(8)))

    assert sorted(r.replayed for r in results) == [False] + [True] * 7
    assert await event_types(gateway, order.id) == [
        "order.placed",
        "payment.processed",
        "order.confirmed",
    ]


async def test_a_payment_of_another_amount_is_a_mismatch_and_does_not_confirm(
    gateway: Gateway, shop: Shop
) -> None:
    order = await gateway.place_order(shop.order(await shop.customer(), (await shop.product(), 1)))

    short = await gateway.record_payment(notification(order, amount="0.50"))
    euros = await gateway.record_payment(notification(order, currency="EUR"))

    assert short.outcome is euros.outcome is PaymentOutcome.MISMATCH
    assert (euros.order.status, euros.order.payment_status) == ("pending", "mismatched")
    history = await gateway.order_events(order.id)
    assert [e.event_type for e in history] == [
        "order.placed",
        "payment.mismatch",
        "payment.mismatch",
    ]
    assert history[1].payload["payment"]["amount"] == "0.50"
    # The right payment still confirms it.
    right = await gateway.record_payment(notification(order))
    assert (right.outcome, right.order.status) == (PaymentOutcome.CONFIRMED, "confirmed")


async def test_a_bad_notification_names_the_field_and_writes_nothing(
    gateway: Gateway, shop: Shop
) -> None:
    order = await gateway.place_order(shop.order(await shop.customer(), (await shop.product(), 1)))
    cases: dict[str, dict[str, object]] = {
        "amount": {"amount": 12.5},
        "status": {"status": "pending"},
        "currency": {"currency": "usd"},
        "occurred_at": {"occurred_at": "2026-11-30T10:00:00"},
        "occurred_at ": {"occurred_at": 0},
        "payment_id": {"payment_id": ""},
        "order_id": {"order_id": "not-a-uuid"},
    }
    for field, change in cases.items():
        with pytest.raises(ValidationError) as raised:
            await gateway.record_payment({**notification(order), **change})
        assert raised.value.field == field.strip()
    with pytest.raises(NotFound) as missing:
        await gateway.record_payment({**notification(order), "order_id": str(UUID(int=7))})
    assert missing.value.field == "order_id"
    assert await payment_rows(gateway, order.id) == []
    assert await event_types(gateway, order.id) == ["order.placed"]


async def test_a_payment_and_the_timeout_racing_for_an_order_have_exactly_one_winner(
    world: World,
) -> None:
    gateway, shop = world.gateway, world.shop
    customer, product = await shop.customer(), await shop.product(stock=400)
    orders = [await gateway.place_order(shop.order(customer, (product, 2))) for _ in range(120)]
    await make_overdue(gateway, *orders)
    rng = random.Random(11)
    payments = [notification(order) for order in orders]
    rng.shuffle(payments)

    async def sweep_repeatedly() -> int:
        swept = 0
        for _ in range(40):
            swept += await upkeep.expire_unpaid_orders(gateway.pool, limit=3)
            await asyncio.sleep(0)
        return swept

    async def pay_all() -> list[PaymentOutcome]:
        semaphore = asyncio.Semaphore(8)

        async def one(paid: dict[str, str]) -> PaymentOutcome:
            async with semaphore:
                return (await gateway.record_payment(paid)).outcome

        return list(await asyncio.gather(*(one(p) for p in payments)))

    results = await asyncio.gather(sweep_repeatedly(), sweep_repeatedly(), pay_all())
    swept = results[0] + results[1]
    outcomes = results[2]
    swept += await upkeep.expire_unpaid_orders(gateway.pool)

    confirmed = outcomes.count(PaymentOutcome.CONFIRMED)
    refunds = outcomes.count(PaymentOutcome.REFUND_REQUIRED)
    assert confirmed + refunds == len(orders)
    assert swept == refunds  # every order the timeout won gets its late payment flagged
    for order in orders:
        final = await gateway.get_order(order.id)
        types = await event_types(gateway, order.id)
        if final.status == "confirmed":
            assert final.payment_status == "paid"
            assert types == ["order.placed", "payment.processed", "order.confirmed"]
        else:
            assert (final.status, final.payment_status) == ("cancelled", "refund_required")
            assert types == [
                "order.placed",
                "payment.timed_out",
                "inventory.released",
                "order.cancelled",
                "payment.refund_required",
            ]
    assert await shop.stock(product) == 400 - 2 * confirmed
