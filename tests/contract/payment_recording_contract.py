"""The contract of recording payments and the payment timeout, one test per rule, held by
every :class:`simulation.payment_storage.PaymentRecording`."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from gateway.errors import Conflict
from gateway.payments.decision import PaymentOutcome
from gateway.payments.notification import PaymentNotification
from gateway.write_path.lifecycle import PaymentStatus
from gateway.write_path.order_status import OrderStatus
from simulation.payment_storage import RecordedOutcome
from tests.contract.payment_harnesses import PaymentHarness, PendingOrder


def payment(
    order: PendingOrder,
    status: str = "succeeded",
    *,
    amount: Decimal | None = None,
    payment_id: str | None = None,
) -> PaymentNotification:
    """A notification for ``order``: by default, its full amount paid."""
    return PaymentNotification(
        payment_id=payment_id or f"pay_{uuid.uuid4().hex}",
        order_id=order.order_id,
        status=status,
        amount=order.amount if amount is None else amount,
        currency=order.currency,
        occurred_at=datetime.now(UTC),
    )


class PaymentRecordingContract:
    """Subclasses provide a ``harness`` fixture."""

    async def test_a_succeeded_payment_confirms_a_pending_order(
        self, harness: PaymentHarness
    ) -> None:
        order = await harness.place()
        recorded = await harness.payments.record_payment(payment(order))
        assert recorded == RecordedOutcome(PaymentOutcome.CONFIRMED, replayed=False)
        assert await harness.state(order.order_id) == (OrderStatus.CONFIRMED, PaymentStatus.PAID)

    async def test_a_failed_payment_cancels_a_pending_order_and_returns_its_units(
        self, harness: PaymentHarness
    ) -> None:
        order = await harness.place()
        recorded = await harness.payments.record_payment(payment(order, "failed"))
        assert recorded == RecordedOutcome(PaymentOutcome.CANCELLED, replayed=False)
        assert await harness.state(order.order_id) == (
            OrderStatus.CANCELLED,
            PaymentStatus.FAILED,
        )
        assert await harness.units_returned(order)

    async def test_a_redelivery_returns_the_first_outcome_and_changes_nothing(
        self, harness: PaymentHarness
    ) -> None:
        order = await harness.place()
        first = payment(order)
        await harness.payments.record_payment(first)
        again = await harness.payments.record_payment(first)
        assert again == RecordedOutcome(PaymentOutcome.CONFIRMED, replayed=True)
        assert await harness.state(order.order_id) == (OrderStatus.CONFIRMED, PaymentStatus.PAID)

    async def test_a_payment_id_again_with_other_content_is_a_conflict(
        self, harness: PaymentHarness
    ) -> None:
        order = await harness.place()
        first = payment(order)
        await harness.payments.record_payment(first)
        other = payment(order, amount=order.amount + 1, payment_id=first.payment_id)
        with pytest.raises(Conflict, match="amount"):
            await harness.payments.record_payment(other)
        assert await harness.state(order.order_id) == (OrderStatus.CONFIRMED, PaymentStatus.PAID)

    async def test_a_payment_after_the_timeout_cancelled_the_order_requires_a_refund(
        self, harness: PaymentHarness
    ) -> None:
        order = await harness.place()
        assert await harness.payments.time_out(order.order_id)
        assert await harness.state(order.order_id) == (
            OrderStatus.CANCELLED,
            PaymentStatus.EXPIRED,
        )
        assert await harness.units_returned(order)
        recorded = await harness.payments.record_payment(payment(order))
        assert recorded.outcome is PaymentOutcome.REFUND_REQUIRED
        assert await harness.state(order.order_id) == (
            OrderStatus.CANCELLED,
            PaymentStatus.REFUND_REQUIRED,
        )

    async def test_the_timeout_after_a_payment_confirmed_the_order_does_nothing(
        self, harness: PaymentHarness
    ) -> None:
        order = await harness.place()
        await harness.payments.record_payment(payment(order))
        assert not await harness.payments.time_out(order.order_id)
        assert await harness.state(order.order_id) == (OrderStatus.CONFIRMED, PaymentStatus.PAID)
        assert not await harness.units_returned(order)

    async def test_a_payment_of_another_amount_is_a_mismatch_and_confirms_nothing(
        self, harness: PaymentHarness
    ) -> None:
        order = await harness.place()
        recorded = await harness.payments.record_payment(payment(order, amount=order.amount - 1))
        assert recorded.outcome is PaymentOutcome.MISMATCH
        assert await harness.state(order.order_id) == (
            OrderStatus.PENDING,
            PaymentStatus.MISMATCHED,
        )

    async def test_a_second_succeeded_payment_of_a_paid_order_requires_a_refund(
        self, harness: PaymentHarness
    ) -> None:
        order = await harness.place()
        await harness.payments.record_payment(payment(order))
        recorded = await harness.payments.record_payment(payment(order))
        assert recorded == RecordedOutcome(PaymentOutcome.REFUND_REQUIRED, replayed=False)
        assert await harness.state(order.order_id) == (
            OrderStatus.CONFIRMED,
            PaymentStatus.REFUND_REQUIRED,
        )
