"""The checks an order passes before it is written: addresses, products, stock, transitions."""

from __future__ import annotations

import uuid
from decimal import Decimal
from typing import Any

import pytest

from gateway.errors import (
    IllegalTransition,
    InsufficientInventory,
    NotFound,
    ValidationError,
    VersionConflict,
)
from gateway.write_path.models import PlaceOrderRequest
from gateway.write_path.order_status import OrderStatus
from gateway.write_path.orders import check_addresses, check_products, check_transition

CUSTOMER, OTHER = uuid.uuid4(), uuid.uuid4()
BILLING, SHIPPING = uuid.uuid4(), uuid.uuid4()
PEN, INK = uuid.uuid4(), uuid.uuid4()


def request(**quantities: int) -> PlaceOrderRequest:
    products = {"pen": PEN, "ink": INK}
    return PlaceOrderRequest(
        customer_id=CUSTOMER,
        billing_address_id=BILLING,
        shipping_address_id=SHIPPING,
        items=[{"product_id": products[name], "quantity": n} for name, n in quantities.items()],
    )


def product(stock: int, *, active: bool = True) -> dict[str, Any]:
    return {
        "is_active": active,
        "inventory_quantity": stock,
        "sku": "SKU-1",
        "base_price": Decimal("1"),
    }


def test_both_addresses_must_exist_and_be_the_customer_s() -> None:
    check_addresses(request(pen=1), {BILLING: CUSTOMER, SHIPPING: CUSTOMER})
    with pytest.raises(NotFound) as missing:
        check_addresses(request(pen=1), {BILLING: CUSTOMER})
    assert missing.value.field == "shipping_address_id"
    with pytest.raises(ValidationError, match="does not belong") as foreign:
        check_addresses(request(pen=1), {BILLING: OTHER, SHIPPING: CUSTOMER})
    assert [e.field for e in foreign.value.errors] == ["billing_address_id"]


def test_every_product_must_exist_and_be_for_sale_named_by_its_item() -> None:
    with pytest.raises(NotFound) as missing:
        check_products(request(pen=1, ink=1), {PEN: product(5)})
    assert missing.value.field == "items[1].product_id"
    with pytest.raises(ValidationError, match="not for sale") as inactive:
        check_products(request(pen=1), {PEN: product(5, active=False)})
    assert [e.field for e in inactive.value.errors] == ["items[0].product_id"]


def test_an_item_asking_for_more_than_the_stock_is_refused() -> None:
    check_products(request(pen=5), {PEN: product(5)})
    with pytest.raises(InsufficientInventory) as short:
        check_products(request(pen=6), {PEN: product(5)})
    assert "6" in str(short.value) and "5" in str(short.value)


def test_a_transition_checks_the_version_first_then_the_state_machine() -> None:
    order = uuid.uuid4()
    check_transition(order, OrderStatus.PENDING, 1, OrderStatus.CONFIRMED, expected_version=1)
    check_transition(order, OrderStatus.PENDING, 4, OrderStatus.CONFIRMED, expected_version=None)
    with pytest.raises(VersionConflict):
        check_transition(order, OrderStatus.PENDING, 2, OrderStatus.SHIPPED, expected_version=1)
    with pytest.raises(IllegalTransition):
        check_transition(order, OrderStatus.PENDING, 1, OrderStatus.SHIPPED, expected_version=1)
