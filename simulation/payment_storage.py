"""Recording payment notifications and the payment timeout against a shard's orders: the
interface the simulation drives, in memory (with the gateway's pure payment rules) and over
PostgreSQL (the gateway's own methods)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol
from uuid import UUID

import asyncpg

from gateway.errors import NotFound
from gateway.facade.gateway import Gateway
from gateway.payments.decision import PaymentOutcome, decide_payment, payment_steps, timeout_steps
from gateway.payments.notification import PaymentNotification
from gateway.payments.recording import PaymentIdReused
from gateway.relay import upkeep
from gateway.write_path.lifecycle import Step
from gateway.write_path.order_status import RESTOCKING_STATUSES, OrderStatus
from simulation.saga_storage import InMemoryShard, StoredOrder


@dataclass(frozen=True)
class RecordedOutcome:
    """What recording a notification answered."""

    outcome: PaymentOutcome
    replayed: bool
    """True when the payment id was recorded before: nothing changed."""


class PaymentRecording(Protocol):
    """Payments and the payment timeout on the orders of one database."""

    async def record_payment(self, notification: PaymentNotification) -> RecordedOutcome:
        """Record the notification and apply its outcome to its order (``PaymentIdReused``
        for a known payment id with other content, ``NotFound`` for an unknown order)."""

    async def time_out(self, order_id: UUID) -> bool:
        """The order's payment is overdue: cancel it if it is still pending; whether it was."""


def redelivery_differences(recorded: PaymentNotification, sent: PaymentNotification) -> list[str]:
    """The fields in which a notification differs from the one recorded with its id."""
    return [
        name
        for name in ("order_id", "status", "amount", "currency")
        if getattr(recorded, name) != getattr(sent, name)
    ]


class InMemoryPayments:
    """Payments on an in-memory shard's orders, by the gateway's payment rules."""

    def __init__(self, shard: InMemoryShard) -> None:
        self.shard = shard

    async def record_payment(self, notification: PaymentNotification) -> RecordedOutcome:
        shard = self.shard
        await shard.hooks.before(shard.name, "record_payment")
        async with shard.order_lock(notification.order_id):
            found = shard.orders.get(notification.order_id)
            if found is None:
                raise NotFound("order", str(notification.order_id))
            earlier = shard.payments.get(notification.payment_id)
            if earlier is not None:
                differences = redelivery_differences(earlier[0], notification)
                if differences:
                    raise PaymentIdReused(notification.payment_id, differences)
                recorded = RecordedOutcome(earlier[1], replayed=True)
            else:
                matches = (
                    notification.amount == found.total_amount
                    and notification.currency == found.currency
                )
                outcome = decide_payment(
                    found.status, found.payment_status, notification.succeeded, matches
                )
                shard.payments[notification.payment_id] = (notification, outcome)
                shard.payment_log.append((notification.payment_id, outcome))
                self.apply_steps(found, payment_steps(outcome, found.status, found.payment_status))
                recorded = RecordedOutcome(outcome, replayed=False)
        await shard.hooks.after(shard.name, "record_payment")
        return recorded

    async def time_out(self, order_id: UUID) -> bool:
        shard = self.shard
        await shard.hooks.before(shard.name, "time_out")
        async with shard.order_lock(order_id):
            found = shard.orders.get(order_id)
            due = found is not None and found.status is OrderStatus.PENDING
            if found is not None and due:
                self.apply_steps(found, timeout_steps())
        await shard.hooks.after(shard.name, "time_out")
        return due

    def apply_steps(self, order: StoredOrder, steps: tuple[Step, ...]) -> None:
        """Apply the steps to the order, appending their events; a cancellation queues the
        order's return, as the shard's trigger does."""
        for step in steps:
            restocked = order.status not in RESTOCKING_STATUSES and step.status in (
                RESTOCKING_STATUSES
            )
            order.status, order.payment_status = step.status, step.payment_status
            order.version += 1
            order.events.append(step.event_type)
            if restocked:
                self.shard.returns.append(order.order_id)


class PostgresPayments:
    """Payments on a single database's orders, through the gateway."""

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway

    async def record_payment(self, notification: PaymentNotification) -> RecordedOutcome:
        recorded = await self.gateway.record_payment(notification)
        return RecordedOutcome(recorded.outcome, recorded.replayed)

    async def time_out(self, order_id: UUID) -> bool:
        pool: asyncpg.Pool = self.gateway.pool
        before = await self.gateway.get_order(order_id)
        await pool.execute(
            "UPDATE orders SET payment_due_at = now() - interval '1 second' WHERE id = $1",
            order_id,
        )
        await upkeep.expire_unpaid_orders(pool)
        after = await self.gateway.get_order(order_id)
        return before.status is OrderStatus.PENDING and after.status is OrderStatus.CANCELLED
