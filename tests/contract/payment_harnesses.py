"""What the payment recording contract needs besides the recording: a pending order awaiting
its payment, its state, and whether its units went back; in memory and in PostgreSQL."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from decimal import Decimal
from uuid import UUID

from gateway.facade.gateway import Gateway
from gateway.write_path.lifecycle import PaymentStatus
from gateway.write_path.order_status import OrderStatus
from simulation.payment_storage import InMemoryPayments, PaymentRecording, PostgresPayments
from simulation.saga_storage import InMemoryShard, StoredOrder
from support.shop import Shop

STOCK = 10
QUANTITY = 2


@dataclass(frozen=True)
class PendingOrder:
    """An order awaiting its payment, and what it costs."""

    order_id: UUID
    amount: Decimal
    currency: str
    product: UUID


class PaymentHarness:
    """A payment recording under test, with what its tests set up."""

    payments: PaymentRecording

    async def place(self) -> PendingOrder:
        """A new pending order of ``QUANTITY`` units of a product with ``STOCK`` units."""
        raise NotImplementedError

    async def state(self, order_id: UUID) -> tuple[OrderStatus, PaymentStatus | None]:
        """The order's status and payment status."""
        raise NotImplementedError

    async def units_returned(self, order: PendingOrder) -> bool:
        """Whether the order's units went back (or are queued to)."""
        raise NotImplementedError


class MemoryPaymentHarness(PaymentHarness):
    """Payments on the simulation's in-memory shard."""

    def __init__(self) -> None:
        self.shard = InMemoryShard("alpha")
        self.payments = InMemoryPayments(self.shard)

    async def place(self) -> PendingOrder:
        order_id = uuid.uuid4()
        amount = Decimal("10.00") * QUANTITY
        self.shard.orders[order_id] = StoredOrder(order_id, uuid.uuid4(), total_amount=amount)
        return PendingOrder(order_id, amount, "USD", uuid.uuid4())

    async def state(self, order_id: UUID) -> tuple[OrderStatus, PaymentStatus | None]:
        found = self.shard.orders[order_id]
        return found.status, found.payment_status

    async def units_returned(self, order: PendingOrder) -> bool:
        return order.order_id in self.shard.returns


class PostgresPaymentHarness(PaymentHarness):
    """Payments through a single-database gateway."""

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway
        self.shop = Shop(gateway)
        self.payments = PostgresPayments(gateway)

    async def place(self) -> PendingOrder:
        customer, product = await self.shop.customer(), await self.shop.product(stock=STOCK)
        order = await self.gateway.place_order(self.shop.order(customer, (product, QUANTITY)))
        return PendingOrder(order.id, order.total_amount, order.currency, product.id)

    async def state(self, order_id: UUID) -> tuple[OrderStatus, PaymentStatus | None]:
        order = await self.gateway.get_order(order_id)
        return order.status, order.payment_status

    async def units_returned(self, order: PendingOrder) -> bool:
        stock = await self.gateway.pool.fetchval(
            "SELECT inventory_quantity FROM products WHERE id = $1", order.product
        )
        return bool(stock == STOCK)
