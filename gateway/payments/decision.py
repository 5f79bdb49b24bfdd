"""What a payment does to its order, and the events that record it: pure rules, no I/O."""

from __future__ import annotations

from enum import StrEnum

from gateway.write_path.lifecycle import (
    INVENTORY_RELEASED,
    ORDER_CANCELLED,
    ORDER_CONFIRMED,
    PAYMENT_FAILED,
    PAYMENT_MISMATCH,
    PAYMENT_PROCESSED,
    PAYMENT_REFUND_REQUIRED,
    PAYMENT_TIMED_OUT,
    PaymentStatus,
    Step,
)
from gateway.write_path.order_status import OrderStatus

CLOSED_STATUSES = frozenset({OrderStatus.CANCELLED, OrderStatus.REFUNDED})
"""Statuses of orders that can no longer take money."""


class PaymentOutcome(StrEnum):
    """What a payment notification did (``payments.outcome``)."""

    CONFIRMED = "confirmed"
    """Succeeded for a pending order, amount and currency as ordered: the order is confirmed."""
    ATTACHED = "attached"
    """Succeeded for an order a caller had already moved on without a payment."""
    CANCELLED = "cancelled"
    """Failed for a pending order: the order is cancelled and its units returned."""
    MISMATCH = "mismatch"
    """Succeeded with an amount or currency that is not the order's: recorded, not confirmed."""
    REFUND_REQUIRED = "refund_required"
    """Succeeded for an order that cannot take it (cancelled, or paid already)."""
    IGNORED = "ignored"
    """Failed for an order that is no longer waiting for a payment: recorded only."""


NEEDS_ATTENTION = frozenset({PaymentOutcome.MISMATCH, PaymentOutcome.REFUND_REQUIRED})
"""Outcomes someone must act on (``fanout doctor`` lists them)."""


def decide_payment(
    status: OrderStatus,
    payment_status: PaymentStatus | None,
    succeeded: bool,
    amount_matches: bool,
) -> PaymentOutcome:
    """The outcome of a payment for an order in ``status`` whose payment stands at
    ``payment_status``. Whichever of a payment and the timeout locks the order first wins;
    the other finds the order as the winner left it and lands here."""
    if not succeeded:
        return PaymentOutcome.CANCELLED if status is OrderStatus.PENDING else PaymentOutcome.IGNORED
    if status in CLOSED_STATUSES or payment_status is PaymentStatus.PAID:
        return PaymentOutcome.REFUND_REQUIRED
    if not amount_matches:
        return PaymentOutcome.MISMATCH
    if status is OrderStatus.PENDING:
        return PaymentOutcome.CONFIRMED
    return PaymentOutcome.ATTACHED


def payment_steps(
    outcome: PaymentOutcome, status: OrderStatus, payment_status: PaymentStatus | None
) -> tuple[Step, ...]:
    """The events an outcome appends to an order in ``status``, each with the order's state
    after it."""
    match outcome:
        case PaymentOutcome.CONFIRMED:
            return (
                Step(PAYMENT_PROCESSED, status, PaymentStatus.PAID),
                Step(ORDER_CONFIRMED, OrderStatus.CONFIRMED, PaymentStatus.PAID),
            )
        case PaymentOutcome.ATTACHED:
            return (Step(PAYMENT_PROCESSED, status, PaymentStatus.PAID),)
        case PaymentOutcome.CANCELLED:
            return compensation_steps(PAYMENT_FAILED, PaymentStatus.FAILED)
        case PaymentOutcome.MISMATCH:
            return (Step(PAYMENT_MISMATCH, status, PaymentStatus.MISMATCHED),)
        case PaymentOutcome.REFUND_REQUIRED:
            return (Step(PAYMENT_REFUND_REQUIRED, status, PaymentStatus.REFUND_REQUIRED),)
        case PaymentOutcome.IGNORED:
            return (Step(PAYMENT_FAILED, status, payment_status),)


def timeout_steps() -> tuple[Step, ...]:
    """The events that cancel a pending order whose payment never came."""
    return compensation_steps(PAYMENT_TIMED_OUT, PaymentStatus.EXPIRED)


def compensation_steps(payment_event: str, payment_status: PaymentStatus) -> tuple[Step, ...]:
    """Cancel a pending order: the payment event, the units returned, the cancellation."""
    return (
        Step(payment_event, OrderStatus.PENDING, payment_status),
        Step(INVENTORY_RELEASED, OrderStatus.PENDING, payment_status),
        Step(ORDER_CANCELLED, OrderStatus.CANCELLED, payment_status),
    )
