"""Recording payments and payment timeouts against orders, inside the caller's transaction.

Both lock the order's row first, so a payment and the timeout racing for one order are
decided one after the other: the first wins, the second finds what it left
(:func:`gateway.payments.decision.decide_payment`).
"""

from __future__ import annotations

from gateway.errors import Conflict
from gateway.payments.decision import (
    PaymentOutcome,
    decide_payment,
    payment_steps,
    timeout_steps,
)
from gateway.payments.notification import PaymentNotification
from gateway.postgres.database import Connection, fetch_required
from gateway.postgres.queries import query
from gateway.write_path import orders
from gateway.write_path.lifecycle import ORDER_CANCELLED, PAYMENT_EVENTS

TIMEOUT_REASON = "payment_timeout"
FAILURE_REASON = "payment_failed"


class PaymentIdReused(Conflict):
    """A payment id already recorded arrives with other content (another order, status,
    amount or currency): not a redelivery."""

    def __init__(self, payment_id: str, differences: list[str]) -> None:
        self.payment_id = payment_id
        self.differences = differences
        super().__init__(
            f"payment {payment_id!r} was recorded with a different {', '.join(differences)}"
        )


async def record_payment(
    connection: Connection, notification: PaymentNotification
) -> tuple[PaymentOutcome, orders.OrderChange | None]:
    """Record the payment and apply its outcome to the order; ``(outcome, None)`` when the
    payment id was recorded before (nothing is written)."""
    current = await orders.lock_order(connection, notification.order_id)
    earlier = await connection.fetchrow(query("get_payment"), notification.payment_id)
    if earlier is not None:
        return _redelivered(earlier, notification), None
    matches = (
        notification.amount == current.total_amount and notification.currency == current.currency
    )
    outcome = decide_payment(
        current.status, current.payment_status, notification.succeeded, matches
    )
    inserted = await connection.fetchval(
        query("insert_payment"),
        notification.payment_id,
        notification.order_id,
        notification.status,
        notification.amount,
        notification.currency,
        notification.occurred_at,
        outcome.value,
    )
    if inserted is None:
        # Recorded meanwhile by a delivery that locked another order: not the same payment.
        raced = await fetch_required(connection, query("get_payment"), notification.payment_id)
        return _redelivered(raced, notification), None
    payment = {"payment": notification.as_payload(outcome)}
    details = {event: payment for event in PAYMENT_EVENTS} | {
        ORDER_CANCELLED: {"reason": FAILURE_REASON}
    }
    steps = payment_steps(outcome, current.status, current.payment_status)
    return outcome, await orders.apply_steps(connection, current, steps, details)


async def expire_due_orders(connection: Connection, limit: int) -> list[orders.OrderChange]:
    """Cancel up to ``limit`` pending orders whose payment is overdue, returning their units."""
    due = [row["id"] for row in await connection.fetch(query("lock_due_unpaid_orders"), limit)]
    if not due:
        return []
    await connection.execute(query("lock_products_of_orders"), due)
    details = {ORDER_CANCELLED: {"reason": TIMEOUT_REASON}}
    changes = []
    for order_id in due:
        current = await orders.lock_order(connection, order_id)
        changes.append(await orders.apply_steps(connection, current, timeout_steps(), details))
    return changes


def _redelivered(row: orders.Row, notification: PaymentNotification) -> PaymentOutcome:
    differences = [
        name
        for name, recorded, sent in (
            ("order_id", row["order_id"], notification.order_id),
            ("status", row["status"], notification.status),
            ("amount", row["amount"], notification.amount),
            ("currency", row["currency"], notification.currency),
        )
        if recorded != sent
    ]
    if differences:
        raise PaymentIdReused(notification.payment_id, differences)
    return PaymentOutcome(row["outcome"])
