"""Order status transitions against a real PostgreSQL."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from gateway import (
    IllegalTransition,
    NotFound,
    Order,
    OrderStatus,
    ValidationError,
    VersionConflict,
)
from support.shop import Shop


async def placed(shop: Shop, stock: int = 10, quantity: int = 1) -> tuple[Order, Shop]:
    customer = await shop.customer()
    product = await shop.product(stock=stock)
    return await shop.gateway.place_order(shop.order(customer, (product, quantity))), shop


async def test_the_happy_path_bumps_the_version_and_appends_events(shop: Shop) -> None:
    order, _ = await placed(shop)
    path = ["confirmed", "processing", "shipped", "delivered", "refunded"]

    for expected_version, status in enumerate(path, start=1):
        order = await shop.gateway.transition(order.id, status, expected_version=expected_version)
        assert order.status == status
        assert order.version == expected_version + 1

    events = await shop.events_of(order.id)
    assert [e["event_type"] for e in events] == ["order.placed"] + ["order.status_changed"] * 5
    assert [e["version"] for e in events] == [1, 2, 3, 4, 5, 6]
    assert [e["payload"]["previous_status"] for e in events[1:]] == ["pending", *path[:-1]]
    assert events[-1]["payload"]["status"] == "refunded"
    assert events[-1]["payload"]["items"][0]["quantity"] == 1
    assert await shop.gateway.get_order(order.id) == order


@pytest.mark.parametrize(
    ("path", "illegal"),
    [
        ([], "shipped"),
        ([], "delivered"),
        (["confirmed"], "pending"),
        (["cancelled"], "confirmed"),
        (["confirmed", "processing", "shipped"], "cancelled"),
        (["confirmed", "processing", "shipped", "delivered", "refunded"], "delivered"),
    ],
)
async def test_illegal_transitions_are_refused_and_write_nothing(
    shop: Shop, path: list[str], illegal: str
) -> None:
    order, _ = await placed(shop)
    for status in path:
        order = await shop.gateway.transition(order.id, status)
    before = await shop.counts()

    with pytest.raises(IllegalTransition) as raised:
        await shop.gateway.transition(order.id, illegal)

    assert (raised.value.from_status, raised.value.to_status) == (order.status, illegal)
    assert await shop.counts() == before
    assert (await shop.gateway.get_order(order.id)).version == order.version


async def test_a_stale_expected_version_is_a_conflict(shop: Shop) -> None:
    order, _ = await placed(shop)
    await shop.gateway.transition(order.id, "confirmed", expected_version=1)
    before = await shop.counts()

    with pytest.raises(VersionConflict) as raised:
        await shop.gateway.transition(order.id, "cancelled", expected_version=1)

    assert (raised.value.expected, raised.value.actual) == (1, 2)
    assert await shop.counts() == before


async def test_concurrent_transitions_from_one_version_let_one_win(shop: Shop) -> None:
    order, _ = await placed(shop)
    results = await asyncio.gather(
        shop.gateway.transition(order.id, "confirmed", expected_version=1),
        shop.gateway.transition(order.id, "cancelled", expected_version=1),
        return_exceptions=True,
    )
    assert sum(isinstance(r, Order) for r in results) == 1
    assert sum(isinstance(r, VersionConflict) for r in results) == 1
    assert (await shop.gateway.get_order(order.id)).version == 2
    assert len(await shop.events_of(order.id)) == 2


async def test_cancelling_returns_the_units_to_inventory(shop: Shop) -> None:
    customer = await shop.customer()
    product = await shop.product(stock=10)
    order = await shop.gateway.place_order(shop.order(customer, (product, 4)))
    assert await shop.stock(product) == 6

    await shop.gateway.transition(order.id, "cancelled")

    assert await shop.stock(product) == 10


async def test_unknown_orders_and_statuses_are_rejected(shop: Shop) -> None:
    with pytest.raises(NotFound) as missing:
        await shop.gateway.transition(uuid.uuid4(), OrderStatus.CONFIRMED)
    assert missing.value.entity == "order"

    order, _ = await placed(shop)
    with pytest.raises(ValidationError) as bad_status:
        await shop.gateway.transition(order.id, "teleported")
    assert bad_status.value.field == "status"
    with pytest.raises(ValidationError) as bad_id:
        await shop.gateway.transition("42", "confirmed")
    assert bad_id.value.field == "order_id"
    with pytest.raises(ValidationError) as bad_version:
        await shop.gateway.transition(order.id, "confirmed", expected_version=0)
    assert bad_version.value.field == "expected_version"
