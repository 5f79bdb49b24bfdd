"""place_order against a real PostgreSQL: pricing, inventory, events, and atomicity."""

from __future__ import annotations

import asyncio
import re
import uuid
from decimal import Decimal

import asyncpg
import pytest

from gateway import (
    Gateway,
    InsufficientInventory,
    NotFound,
    OrderStatus,
    ValidationError,
)
from support.shop import REJECTED_NOTES, Shop, outbox_rejecting


async def test_places_an_order_with_its_items_totals_and_event(shop: Shop) -> None:
    customer = await shop.customer()
    mug, plate = await shop.product("12.50", stock=10), await shop.product("3.35", stock=5)

    order = await shop.gateway.place_order(
        shop.order(customer, (mug, 2), (plate, 3), customer_segment="vip", metadata={"ch": "web"})
    )

    assert re.fullmatch(r"ORD-\d{8}-\d{8}", order.order_number)
    assert order.status is OrderStatus.PENDING
    assert order.version == 1
    assert order.subtotal == Decimal("35.05")
    assert order.tax_amount == Decimal("2.80")  # 8% of 35.05 = 2.804, rounded half up
    assert order.shipping_amount == Decimal("5.00")
    assert order.total_amount == Decimal("42.85")
    lines = {item.product_sku: item for item in order.items}
    assert lines[mug.sku].unit_price == Decimal("12.50")
    assert lines[mug.sku].total_price == Decimal("25.00")
    assert lines[plate.sku].product_name == plate.name
    assert await shop.stock(mug) == 8
    assert await shop.stock(plate) == 2
    assert await shop.gateway.get_order(order.id) == order

    [event] = await shop.events_of(order.id)
    assert event["event_type"] == "order.placed"
    assert event["aggregate_type"] == "order"
    assert event["version"] == 1
    payload = event["payload"]
    assert payload["total_amount"] == "42.85"
    assert payload["status"] == "pending"
    assert payload["customer_segment"] == "vip"
    assert payload["metadata"] == {"ch": "web"}
    assert payload["customer"]["email"] == customer.email
    assert {item["product_sku"] for item in payload["items"]} == {mug.sku, plate.sku}
    assert payload["created_at"] == order.created_at.isoformat().replace("+00:00", "Z")


async def test_shipping_is_free_from_the_threshold(shop: Shop) -> None:
    customer = await shop.customer()
    product = await shop.product("100.00")
    order = await shop.gateway.place_order(shop.order(customer, (product, 1)))
    assert order.shipping_amount == Decimal("0.00")
    assert order.total_amount == Decimal("108.00")


async def test_unknown_product_names_the_item_and_writes_nothing(shop: Shop) -> None:
    customer = await shop.customer()
    product = await shop.product()
    missing = uuid.uuid4()
    before = await shop.counts()
    request = shop.order(customer, (product, 1))
    request["items"].append({"product_id": str(missing), "quantity": 1})

    with pytest.raises(NotFound) as raised:
        await shop.gateway.place_order(request)

    assert raised.value.field == "items[1].product_id"
    assert raised.value.entity_id == missing
    assert await shop.counts() == before


async def test_insufficient_inventory_names_the_product_and_writes_nothing(shop: Shop) -> None:
    customer = await shop.customer()
    plenty, scarce = await shop.product(stock=50), await shop.product(stock=2)
    before = await shop.counts()

    with pytest.raises(InsufficientInventory) as raised:
        await shop.gateway.place_order(shop.order(customer, (plenty, 5), (scarce, 3)))

    assert raised.value.product_id == scarce.id
    assert (raised.value.requested, raised.value.available) == (3, 2)
    assert scarce.sku in str(raised.value)
    assert await shop.counts() == before


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (lambda r: r.update(items=[]), "items"),
        (lambda r: r["items"][0].update(quantity=0), "items[0].quantity"),
        (lambda r: r["items"][0].update(quantity="many"), "items[0].quantity"),
        (lambda r: r["items"][0].update(product_id="not-a-uuid"), "items[0].product_id"),
        (lambda r: r.update(customer_id=None), "customer_id"),
        (lambda r: r.pop("shipping_address_id"), "shipping_address_id"),
        (lambda r: r.update(surprise=1), "surprise"),
        (lambda r: r.update(items=r["items"] * 2), "items"),
        (lambda r: r.update(customer_segment="Not A Segment!"), "customer_segment"),
        (lambda r: r.update(metadata={"blob": "x" * 20_000}), "metadata"),
    ],
)
async def test_invalid_requests_name_the_field_and_write_nothing(
    shop: Shop, change: object, field: str
) -> None:
    customer = await shop.customer()
    product = await shop.product()
    request = shop.order(customer, (product, 1))
    change(request)  # type: ignore[operator]
    before = await shop.counts()

    with pytest.raises(ValidationError) as raised:
        await shop.gateway.place_order(request)

    assert raised.value.field == field
    assert await shop.counts() == before


async def test_configured_limits_are_enforced(shop: Shop) -> None:
    customer = await shop.customer()
    product = await shop.product(stock=20_000)
    with pytest.raises(ValidationError) as raised:
        await shop.gateway.place_order(shop.order(customer, (product, 10_001)))
    assert raised.value.field == "items[0].quantity"


async def test_unknown_customer_and_foreign_address_are_rejected(shop: Shop) -> None:
    customer, stranger = await shop.customer(), await shop.customer()
    product = await shop.product()
    before = await shop.counts()

    unknown = shop.order(customer, (product, 1), customer_id=str(uuid.uuid4()))
    with pytest.raises(NotFound) as not_found:
        await shop.gateway.place_order(unknown)
    assert not_found.value.field == "customer_id"

    foreign = shop.order(customer, (product, 1))
    foreign["shipping_address_id"] = str(stranger.addresses[1].id)
    with pytest.raises(ValidationError) as invalid:
        await shop.gateway.place_order(foreign)
    assert invalid.value.field == "shipping_address_id"
    assert await shop.counts() == before


async def test_a_failure_after_the_order_rows_rolls_everything_back(shop: Shop) -> None:
    """The outbox insert fails last: the order, its items and the inventory change go too."""
    customer = await shop.customer()
    product = await shop.product(stock=10)
    before = await shop.counts()
    async with outbox_rejecting(shop.gateway.pool):
        with pytest.raises(asyncpg.RaiseError):
            await shop.gateway.place_order(
                shop.order(customer, (product, 4), notes=REJECTED_NOTES),
                idempotency_key=f"rollback-{uuid.uuid4()}",
            )
    assert await shop.counts() == before
    assert await shop.stock(product) == 10


async def test_two_orders_racing_for_the_last_unit(shop: Shop) -> None:
    customer = await shop.customer()
    product = await shop.product(stock=1)
    request = shop.order(customer, (product, 1))

    results = await asyncio.gather(
        shop.gateway.place_order(request),
        shop.gateway.place_order(request),
        return_exceptions=True,
    )

    assert sum(not isinstance(r, BaseException) for r in results) == 1
    [failure] = [r for r in results if isinstance(r, BaseException)]
    assert isinstance(failure, InsufficientInventory)
    assert await shop.stock(product) == 0


async def test_many_orders_never_oversell(shop: Shop) -> None:
    customers = [await shop.customer() for _ in range(3)]
    scarce, other = await shop.product(stock=10), await shop.product(stock=1_000)

    results = await asyncio.gather(
        *(
            shop.gateway.place_order(shop.order(customers[i % 3], (other, 1), (scarce, 1)))
            for i in range(30)
        ),
        return_exceptions=True,
    )

    placed = [r for r in results if not isinstance(r, BaseException)]
    failed = [r for r in results if isinstance(r, BaseException)]
    assert len(placed) == 10
    assert all(isinstance(f, InsufficientInventory) for f in failed)
    assert await shop.stock(scarce) == 0
    assert await shop.stock(other) == 990


async def test_an_inactive_product_is_not_for_sale(shop: Shop, gateway: Gateway) -> None:
    customer = await shop.customer()
    product = await shop.product()
    await gateway.pool.execute("UPDATE products SET is_active = false WHERE id = $1", product.id)
    with pytest.raises(ValidationError) as raised:
        await gateway.place_order(shop.order(customer, (product, 1)))
    assert raised.value.field == "items[0].product_id"
