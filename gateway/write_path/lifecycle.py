"""The order's life as events: every event type of an order's stream and what each changes.

Every event of an order bumps the order's version by one and carries the order's full state at
that version (so each store projects any of them alone). What an event *changes* is fixed by
its type: the status events set the status, the payment events set the payment status, and
``inventory.released`` changes neither. :mod:`gateway.history.fold` rebuilds an order from
these rules alone.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from gateway.write_path.order_status import OrderStatus

ORDER_PLACED = "order.placed"
ORDER_STATUS_CHANGED = "order.status_changed"
"""A status change asked for by a caller (``Gateway.transition``)."""
ORDER_CONFIRMED = "order.confirmed"
ORDER_CANCELLED = "order.cancelled"
PAYMENT_PROCESSED = "payment.processed"
PAYMENT_FAILED = "payment.failed"
PAYMENT_MISMATCH = "payment.mismatch"
PAYMENT_TIMED_OUT = "payment.timed_out"
PAYMENT_REFUND_REQUIRED = "payment.refund_required"
INVENTORY_RELEASED = "inventory.released"

STATUS_EVENTS = frozenset({ORDER_STATUS_CHANGED, ORDER_CONFIRMED, ORDER_CANCELLED})
"""Events that set the order's status."""
PAYMENT_EVENTS = frozenset(
    {
        PAYMENT_PROCESSED,
        PAYMENT_FAILED,
        PAYMENT_MISMATCH,
        PAYMENT_TIMED_OUT,
        PAYMENT_REFUND_REQUIRED,
    }
)
"""Events that set the order's payment status."""
ORDER_SNAPSHOT = "order.snapshot"
"""Not of any stream: the order's current state, sent to a store by ``fanout backfill``."""
ORDER_STREAM_EVENTS = frozenset({ORDER_PLACED, INVENTORY_RELEASED} | STATUS_EVENTS | PAYMENT_EVENTS)
"""Every event type of an order's stream; the stores project each of them."""


class PaymentStatus(StrEnum):
    """Where an order's payment stands (``orders.payment_status``; none while payment is off)."""

    AWAITING = "awaiting"
    PAID = "paid"
    FAILED = "failed"
    MISMATCHED = "mismatched"
    EXPIRED = "expired"
    REFUND_REQUIRED = "refund_required"


@dataclass(frozen=True)
class Step:
    """One event of a change: its type and the order's status and payment status after it."""

    event_type: str
    status: OrderStatus
    payment_status: PaymentStatus | None
