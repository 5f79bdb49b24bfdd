"""The schema's own CHECK and unique constraints, written to directly with SQL."""

from __future__ import annotations

import uuid

import asyncpg
import pytest

from gateway import Gateway
from support.shop import Shop


async def test_no_category_is_its_own_parent(gateway: Gateway) -> None:
    category_id = uuid.uuid4()
    with pytest.raises(asyncpg.CheckViolationError, match="categories_not_own_parent"):
        await gateway.pool.execute(
            "INSERT INTO categories (id, name, slug, parent_id) VALUES ($1, 'a', $2, $1)",
            category_id,
            f"self-{category_id.hex}",
        )


@pytest.mark.parametrize(
    ("column", "value", "constraint"),
    [
        ("email", "nobody", "customers_email_format"),
        ("phone", "phone-number", "customers_phone_format"),
    ],
)
async def test_customer_formats_are_checked(
    gateway: Gateway, column: str, value: str, constraint: str
) -> None:
    values = {"email": f"x-{uuid.uuid4().hex}@example.com", "phone": None, column: value}
    with pytest.raises(asyncpg.CheckViolationError, match=constraint):
        await gateway.pool.execute(
            "INSERT INTO customers (email, phone, first_name, last_name) VALUES ($1, $2, 'a', 'b')",
            values["email"],
            values["phone"],
        )


@pytest.mark.parametrize(
    ("update", "constraint"),
    [
        ("base_price = -1", "products_base_price_non_negative"),
        ("inventory_quantity = -1", "products_inventory_non_negative"),
    ],
)
async def test_prices_and_inventory_are_never_negative(
    shop: Shop, update: str, constraint: str
) -> None:
    product = await shop.product()
    with pytest.raises(asyncpg.CheckViolationError, match=constraint):
        await shop.gateway.pool.execute(f"UPDATE products SET {update} WHERE id = $1", product.id)


@pytest.mark.parametrize(
    ("update", "constraint"),
    [
        ("total_amount = total_amount + 1", "orders_total_is_sum"),
        (
            "tax_amount = -1, total_amount = subtotal - 1 + shipping_amount",
            "orders_tax_non_negative",
        ),
        ("version = 0", "orders_version_positive"),
    ],
)
async def test_order_amounts_are_consistent(shop: Shop, update: str, constraint: str) -> None:
    customer = await shop.customer()
    order = await shop.gateway.place_order(shop.order(customer, (await shop.product(), 1)))
    with pytest.raises(asyncpg.CheckViolationError, match=constraint):
        await shop.gateway.pool.execute(f"UPDATE orders SET {update} WHERE id = $1", order.id)


async def test_item_total_is_quantity_times_unit_price(shop: Shop) -> None:
    customer = await shop.customer()
    order = await shop.gateway.place_order(shop.order(customer, (await shop.product(), 2)))
    with pytest.raises(asyncpg.CheckViolationError, match="order_items_total_is_product"):
        await shop.gateway.pool.execute(
            "UPDATE order_items SET total_price = total_price + 1 WHERE order_id = $1", order.id
        )
    with pytest.raises(asyncpg.CheckViolationError, match="order_items_quantity_positive"):
        await shop.gateway.pool.execute(
            "UPDATE order_items SET quantity = 0, total_price = 0 WHERE order_id = $1", order.id
        )


async def test_one_default_address_per_type_per_customer(shop: Shop) -> None:
    customer = await shop.customer()
    insert = (
        "INSERT INTO addresses (customer_id, address_type, street_address, city, postal_code,"
        " is_default) VALUES ($1, $2, 'x', 'y', 'z', $3)"
    )
    with pytest.raises(asyncpg.UniqueViolationError, match="addresses_one_default_per_type"):
        await shop.gateway.pool.execute(insert, customer.id, "shipping", True)
    await shop.gateway.pool.execute(insert, customer.id, "shipping", False)
    await shop.gateway.pool.execute(insert, customer.id, "shipping", False)
