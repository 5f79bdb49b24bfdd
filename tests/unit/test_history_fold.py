"""Folding an order's stream: what each event type changes, and streams that cannot fold."""

from __future__ import annotations

from decimal import Decimal
from typing import Any, NamedTuple

import pytest

from gateway.history.fold import BrokenStream, OrderState, differences, fold


class E(NamedTuple):
    version: int
    event_type: str
    payload: dict[str, Any]


def state(status: str, payment: str | None, updated: str) -> dict[str, Any]:
    return {
        "status": status,
        "payment_status": payment,
        "total_amount": "25.00",
        "currency": "USD",
        "updated_at": updated,
        "items": [{"product_id": "b", "quantity": 2}, {"product_id": "a", "quantity": 1}],
    }


PLACED = E(1, "order.placed", state("pending", "awaiting", "2026-11-30T10:00:00+00:00"))
PAID = E(2, "payment.processed", state("pending", "paid", "2026-11-30T10:01:00+00:00"))
CONFIRMED = E(3, "order.confirmed", state("confirmed", "paid", "2026-11-30T10:01:00+00:00"))


def test_a_paid_order_folds_to_confirmed_and_paid() -> None:
    folded = fold([PLACED, PAID, CONFIRMED])
    assert folded.status == "confirmed"
    assert folded.payment_status == "paid"
    assert folded.version == 3
    assert folded.total_amount == Decimal("25.00")
    assert folded.lines == (("a", 1), ("b", 2))
    assert folded.updated_at.isoformat() == "2026-11-30T10:01:00+00:00"


def test_each_event_changes_only_what_its_type_says() -> None:
    # A payment event carrying another status does not move the status; a status event
    # carrying another payment status does not move that.
    odd_payment = E(2, "payment.processed", state("shipped", "paid", "2026-11-30T10:01:00+00:00"))
    odd_status = E(3, "order.confirmed", state("confirmed", "failed", "2026-11-30T10:02:00+00:00"))
    folded = fold([PLACED, odd_payment, odd_status])
    assert (folded.status, folded.payment_status) == ("confirmed", "paid")


def test_released_inventory_changes_only_the_version() -> None:
    released = E(
        2, "inventory.released", state("cancelled", "expired", "2026-11-30T10:05:00+00:00")
    )
    folded = fold([PLACED, released])
    assert (folded.status, folded.payment_status, folded.version) == ("pending", "awaiting", 2)


@pytest.mark.parametrize(
    ("stream", "problem"),
    [
        ([], "no events"),
        ([PAID], "starts with payment.processed at version 2"),
        ([PLACED, CONFIRMED], "version 3 follows version 1"),
        ([PLACED, PAID, PAID], "version 2 follows version 2"),
        ([PLACED, E(2, "order.teleported", PAID.payload)], "is a order.teleported event"),
    ],
)
def test_a_stream_that_cannot_be_folded_says_why(stream: list[E], problem: str) -> None:
    with pytest.raises(BrokenStream, match=problem):
        fold(stream)


def test_differences_name_the_fields() -> None:
    folded = fold([PLACED, PAID, CONFIRMED])
    stored = OrderState(
        status="pending",
        payment_status="paid",
        version=2,
        total_amount=Decimal("25.0"),
        currency="USD",
        updated_at=folded.updated_at,
        lines=folded.lines,
    )
    assert differences(folded, stored) == ["status", "version"]
    assert differences(folded, folded) == []
