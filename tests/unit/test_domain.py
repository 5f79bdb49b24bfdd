"""Pricing, the order state machine, URL redaction and request validation: no I/O."""

from __future__ import annotations

import itertools
from decimal import Decimal

import pytest

from gateway import OrderStatus, PlaceOrderRequest, ValidationError
from gateway.configuration.secrets import redact_url
from gateway.write_path.order_status import ALLOWED_TRANSITIONS, can_transition
from gateway.write_path.pricing import PricingPolicy
from gateway.write_path.validation import field_path, parse

POLICY = PricingPolicy(Decimal("0.08"), Decimal("5.00"), Decimal("100.00"), "USD")


@pytest.mark.parametrize(
    ("lines", "subtotal", "tax", "shipping", "total"),
    [
        (["10.00"], "10.00", "0.80", "5.00", "15.80"),
        (["0.05"], "0.05", "0.00", "5.00", "5.05"),
        (["0.07"], "0.07", "0.01", "5.00", "5.08"),  # 0.0056 rounds half up to 0.01
        (["99.99"], "99.99", "8.00", "5.00", "112.99"),
        (["60.00", "40.00"], "100.00", "8.00", "0.00", "108.00"),
    ],
)
def test_pricing(lines: list[str], subtotal: str, tax: str, shipping: str, total: str) -> None:
    totals = POLICY.totals(Decimal(line) for line in lines)
    assert (totals.subtotal, totals.tax_amount, totals.shipping_amount, totals.total_amount) == (
        Decimal(subtotal),
        Decimal(tax),
        Decimal(shipping),
        Decimal(total),
    )


def test_no_threshold_means_shipping_is_always_charged() -> None:
    policy = PricingPolicy(Decimal("0"), Decimal("7.50"), None, "USD")
    assert policy.totals([Decimal("1000")]).shipping_amount == Decimal("7.50")


def test_the_state_machine() -> None:
    forward = ["pending", "confirmed", "processing", "shipped", "delivered", "refunded"]
    for current, target in itertools.pairwise(forward):
        assert can_transition(OrderStatus(current), OrderStatus(target))
    for status in ("pending", "confirmed", "processing"):
        assert can_transition(OrderStatus(status), OrderStatus.CANCELLED)
    assert not can_transition(OrderStatus.SHIPPED, OrderStatus.CANCELLED)
    assert not can_transition(OrderStatus.PENDING, OrderStatus.SHIPPED)
    assert not ALLOWED_TRANSITIONS[OrderStatus.CANCELLED]
    assert not ALLOWED_TRANSITIONS[OrderStatus.REFUNDED]
    assert sum(len(targets) for targets in ALLOWED_TRANSITIONS.values()) == 8


@pytest.mark.parametrize(
    ("url", "redacted"),
    [
        ("postgresql://u:pw@h:5432/db", "postgresql://u:***@h:5432/db"),
        ("postgresql://u@h/db", "postgresql://u@h/db"),
        ("redis://:pw@127.0.0.1:6379/0", "redis://:***@127.0.0.1:6379/0"),
        (
            "postgresql://u:p%40ss@[::1]:5432/db?sslmode=require",
            "postgresql://u:***@[::1]:5432/db?sslmode=require",
        ),
    ],
)
def test_redact_url(url: str, redacted: str) -> None:
    assert redact_url(url) == redacted


def test_field_paths() -> None:
    assert field_path(("items", 3, "quantity")) == "items[3].quantity"
    assert field_path(()) == "(request)"


def test_parse_reports_every_bad_field() -> None:
    with pytest.raises(ValidationError) as raised:
        parse(PlaceOrderRequest, {"customer_id": "x", "items": [{"quantity": -1}]})
    fields = {error.field for error in raised.value.errors}
    assert {
        "customer_id",
        "billing_address_id",
        "items[0].product_id",
        "items[0].quantity",
    } <= fields
