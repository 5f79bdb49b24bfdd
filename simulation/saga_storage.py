"""The saga's storage in memory, with the rules of the PostgreSQL one: a reservation settles
only from its settlement's source statuses (and, when asked, only while it names a given
shard), a held key is unique per shard, the first decision about a reservation wins, a shard
decides nothing about an order that moved away from it, a cancellation queues its order's
return, a retake needs the stock. ``move_customer`` leaves what a move between shards leaves.

Every operation is one transaction: its state changes happen between two awaits of the
``Hooks`` it is given, where the simulation injects its faults (a crash, a lost connection, a
shard that does not answer) before or after the change lands.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from uuid import UUID

from gateway.errors import IdempotencyConflict, ReservationLapsed
from gateway.payments.decision import PaymentOutcome
from gateway.payments.notification import PaymentNotification
from gateway.sharding.decisions import Decision
from gateway.sharding.reservations import (
    Reservation,
    ReservationKey,
    ReservationStatus,
    Settlement,
)
from gateway.sharding.saga_storage import ShardRecords
from gateway.write_path.idempotency import KeyClaim
from gateway.write_path.lifecycle import PaymentStatus
from gateway.write_path.models import Order, PlaceOrderRequest
from gateway.write_path.order_status import RESTOCKING_STATUSES, OrderStatus, can_transition
from gateway.write_path.orders import Row, check_products
from gateway.write_path.placement import PlacedOrder


class Hooks:
    """Called around every operation's change; the simulation's faults subclass it."""

    async def before(self, place: str, operation: str) -> None:
        """Before the change of ``operation`` on ``place`` (a shard's name, or ``catalog``)."""

    async def after(self, place: str, operation: str) -> None:
        """After the change landed."""


@dataclass
class StoredReservation:
    """One reservation row."""

    order_id: UUID
    shard: str
    lines: list[tuple[UUID, int]]
    key: str | None
    fingerprint: str | None
    expires_at: float
    status: ReservationStatus = ReservationStatus.HELD
    version: int = 1


class InMemoryCatalog:
    """The catalog: products with their stock, and the reservations."""

    def __init__(
        self, stock: Mapping[UUID, int], clock: Callable[[], float], hooks: Hooks | None = None
    ) -> None:
        self.stock = dict(stock)
        self.reservations: dict[UUID, StoredReservation] = {}
        self._clock = clock
        self._hooks = hooks or Hooks()
        self._sweeping = False

    async def reserve(
        self,
        order_id: UUID,
        shard: str,
        request: PlaceOrderRequest,
        key: ReservationKey | None,
        seconds: float,
    ) -> Reservation:
        await self._hooks.before("catalog", "reserve")
        product_ids = [item.product_id for item in request.items]
        earlier = self._held_with_key(shard, key) if key is not None else None
        if earlier is not None:
            reservation = Reservation(earlier.order_id, self._rows(product_ids), reused=True)
        else:
            rows = self._rows(product_ids)
            check_products(request, rows)
            lines = [(item.product_id, item.quantity) for item in request.items]
            for product_id, quantity in lines:
                self.stock[product_id] -= quantity
            self.reservations[order_id] = StoredReservation(
                order_id,
                shard,
                lines,
                key.key if key else None,
                key.fingerprint if key else None,
                self._clock() + seconds,
            )
            reservation = Reservation(order_id, rows, reused=False)
        await self._hooks.after("catalog", "reserve")
        return reservation

    async def settle(
        self, order_id: UUID, settlement: Settlement, shard: str | None = None
    ) -> bool:
        await self._hooks.before("catalog", "settle")
        found = self.reservations.get(order_id)
        settled = (
            found is not None
            and found.status in settlement.sources
            and shard in (None, found.shard)
        )
        if found is not None and settled:
            found.status = settlement.target
            if settlement.restores_units:
                found.version += 1
                for product_id, quantity in found.lines:
                    self.stock[product_id] += quantity
        await self._hooks.after("catalog", "settle")
        return settled

    async def retake(self, order_id: UUID) -> bool:
        await self._hooks.before("catalog", "retake")
        found = self.reservations.get(order_id)
        retaken = (
            found is not None
            and found.status in (ReservationStatus.RELEASED, ReservationStatus.RETURNED)
            and all(self.stock[product] >= quantity for product, quantity in found.lines)
        )
        if found is not None and retaken:
            found.status = ReservationStatus.COMMITTED
            found.version += 1
            for product_id, quantity in found.lines:
                self.stock[product_id] -= quantity
        await self._hooks.after("catalog", "retake")
        return retaken

    async def status_of(self, order_id: UUID) -> ReservationStatus | None:
        await self._hooks.before("catalog", "status_of")
        found = self.reservations.get(order_id)
        return found.status if found is not None else None

    async def statuses_of(self, order_ids: Sequence[UUID]) -> dict[UUID, ReservationStatus]:
        await self._hooks.before("catalog", "statuses_of")
        return {
            order_id: self.reservations[order_id].status
            for order_id in order_ids
            if order_id in self.reservations
        }

    async def expired(self, shard: str, limit: int) -> list[UUID]:
        await self._hooks.before("catalog", "expired")
        due = sorted(
            (found for found in self._expired() if found.shard == shard),
            key=lambda found: found.expires_at,
        )
        return [found.order_id for found in due[:limit]]

    async def shards_with_expired(self) -> set[str]:
        await self._hooks.before("catalog", "shards_with_expired")
        return {found.shard for found in self._expired()}

    async def committed_page(self, after: UUID | None, limit: int) -> list[tuple[UUID, str]]:
        await self._hooks.before("catalog", "committed_page")
        committed = sorted(
            (found.order_id, found.shard)
            for found in self.reservations.values()
            if found.status is ReservationStatus.COMMITTED
            and (after is None or found.order_id > after)
        )
        return committed[:limit]

    @asynccontextmanager
    async def sweeping(self) -> AsyncIterator[bool]:
        await self._hooks.before("catalog", "sweeping")
        if self._sweeping:
            yield False
            return
        self._sweeping = True
        try:
            yield True
        finally:
            self._sweeping = False

    async def name_shard(self, order_ids: Sequence[UUID], shard: str) -> None:
        """A move's catalog step: the reservations of ``order_ids`` name ``shard`` now."""
        await self._hooks.before("catalog", "name_shard")
        for order_id in order_ids:
            if order_id in self.reservations:
                self.reservations[order_id].shard = shard
        await self._hooks.after("catalog", "name_shard")

    def due_by_shard(self) -> dict[str, list[UUID]]:
        """The held reservations past their expiry now, by shard (for the simulation's
        checks: no fault, no hook)."""
        due: dict[str, list[UUID]] = {}
        for found in self._expired():
            due.setdefault(found.shard, []).append(found.order_id)
        return due

    def _expired(self) -> list[StoredReservation]:
        now = self._clock()
        return [
            found
            for found in self.reservations.values()
            if found.status is ReservationStatus.HELD and found.expires_at <= now
        ]

    def _held_with_key(self, shard: str, key: ReservationKey) -> StoredReservation | None:
        for found in self.reservations.values():
            if (
                found.shard == shard
                and found.key == key.key
                and found.status is ReservationStatus.HELD
            ):
                if found.fingerprint != key.fingerprint:
                    raise IdempotencyConflict(key.key)
                return found
        return None

    def _rows(self, product_ids: Sequence[UUID]) -> dict[UUID, Row]:
        return {
            product_id: {
                "id": product_id,
                "sku": f"SKU-{product_id.hex[:8]}",
                "name": f"Product {product_id.hex[:8]}",
                "base_price": Decimal("10.00"),
                "inventory_quantity": self.stock[product_id],
                "is_active": True,
            }
            for product_id in product_ids
            if product_id in self.stock
        }


@dataclass
class StoredOrder:
    """One order row (what the saga reads of it)."""

    order_id: UUID
    customer_id: UUID
    status: OrderStatus = OrderStatus.PENDING
    version: int = 1
    total_amount: Decimal = Decimal("0.00")
    currency: str = "USD"
    payment_status: PaymentStatus | None = PaymentStatus.AWAITING
    events: list[str] = field(default_factory=list)
    """The payment events appended to the order, in order."""

    def as_order(self) -> Order:
        """The order as the gateway returns it (the fields the saga reads)."""
        now = datetime.fromtimestamp(0, UTC)
        zero = Decimal("0.00")
        return Order(
            id=self.order_id,
            order_number=f"ORD-{self.order_id.hex[:12]}",
            customer_id=self.customer_id,
            status=self.status,
            subtotal=zero,
            tax_amount=zero,
            shipping_amount=zero,
            total_amount=self.total_amount,
            currency=self.currency,
            billing_address_id=None,
            shipping_address_id=None,
            customer_segment=None,
            metadata={},
            notes=None,
            version=self.version,
            created_at=now,
            updated_at=now,
            items=[],
        )


@dataclass
class InMemoryShard:
    """One shard: its orders, idempotency keys, decisions and queued returns."""

    name: str
    hooks: Hooks = field(default_factory=Hooks)
    orders: dict[UUID, StoredOrder] = field(default_factory=dict)
    keys: dict[str, tuple[str, UUID]] = field(default_factory=dict)
    decisions: dict[UUID, Decision] = field(default_factory=dict)
    returns: list[UUID] = field(default_factory=list)
    decision_log: list[tuple[UUID, Decision]] = field(default_factory=list)
    """Every decision recorded, in order (the rules keep one per order)."""
    payments: dict[str, tuple[PaymentNotification, PaymentOutcome]] = field(default_factory=dict)
    """Each payment id recorded, with its notification and outcome."""
    payment_log: list[tuple[str, PaymentOutcome]] = field(default_factory=list)
    """Every payment recorded, in order (the rules keep one per payment id)."""
    moved: dict[UUID, str] = field(default_factory=dict)
    """The tombstones of orders moved away: the shard each went to."""
    _locks: dict[UUID, asyncio.Lock] = field(default_factory=dict)

    async def answers(self, timeout_seconds: float) -> None:
        await self.hooks.before(self.name, "answers")

    @asynccontextmanager
    async def session(self, timeout_seconds: float) -> AsyncIterator[ShardRecords]:
        await self.hooks.before(self.name, "session")
        yield self

    async def decide(
        self, order_id: UUID, wanted: Decision, lock_wait_seconds: float | None = None
    ) -> Decision:
        await self.hooks.before(self.name, "decide")
        decided = self.record_decision(order_id, wanted)
        await self.hooks.after(self.name, "decide")
        return decided

    def record_decision(self, order_id: UUID, wanted: Decision) -> Decision:
        """The rule of ``decide``: the first decision stands; none is recorded for an order
        that moved away (its tombstone is here, the order is not)."""
        if order_id in self.moved and order_id not in self.orders:
            return Decision.MOVED
        if order_id not in self.decisions:
            self.decisions[order_id] = wanted
            self.decision_log.append((order_id, wanted))
        return self.decisions[order_id]

    async def order_statuses(self, order_ids: Sequence[UUID]) -> dict[UUID, OrderStatus]:
        await self.hooks.before(self.name, "order_statuses")
        return {
            order_id: self.orders[order_id].status
            for order_id in order_ids
            if order_id in self.orders
        }

    async def moved_away(self, order_ids: Sequence[UUID]) -> dict[UUID, str]:
        await self.hooks.before(self.name, "moved_away")
        return {order_id: self.moved[order_id] for order_id in order_ids if order_id in self.moved}

    async def live_orders_page(
        self, after: UUID | None, limit: int
    ) -> list[tuple[UUID, OrderStatus]]:
        await self.hooks.before(self.name, "live_orders_page")
        live = sorted(
            (order.order_id, order.status)
            for order in self.orders.values()
            if order.status not in RESTOCKING_STATUSES and (after is None or order.order_id > after)
        )
        return live[:limit]

    @asynccontextmanager
    async def locked_order(self, order_id: UUID) -> AsyncIterator[tuple[OrderStatus | None, int]]:
        await self.hooks.before(self.name, "locked_order")
        async with self._lock(order_id):
            found = self.orders.get(order_id)
            yield (found.status, found.version) if found is not None else (None, 0)

    async def queued_returns(self, limit: int) -> list[UUID]:
        await self.hooks.before(self.name, "queued_returns")
        return self.returns[:limit]

    async def forget_returns(self, order_ids: Sequence[UUID]) -> None:
        await self.hooks.before(self.name, "forget_returns")
        self.returns = [order_id for order_id in self.returns if order_id not in order_ids]
        await self.hooks.after(self.name, "forget_returns")

    async def create_order(
        self,
        order_id: UUID,
        request: PlaceOrderRequest,
        claim: KeyClaim | None,
        products: Mapping[UUID, Row],
    ) -> PlacedOrder:
        await self.hooks.before(self.name, "create_order")
        kept = self.keys.get(claim.key) if claim is not None else None
        if claim is not None and kept is not None:
            if kept[0] != claim.fingerprint:
                raise IdempotencyConflict(claim.key)
            placed = PlacedOrder(self.orders[kept[1]].as_order(), True)
        else:
            if self.record_decision(order_id, Decision.CREATED) is not Decision.CREATED:
                raise ReservationLapsed(order_id)
            total = sum(
                (products[item.product_id]["base_price"] * item.quantity for item in request.items),
                Decimal("0.00"),
            )
            created = StoredOrder(order_id, request.customer_id, total_amount=total)
            self.orders[order_id] = created
            if claim is not None:
                self.keys[claim.key] = (claim.fingerprint, order_id)
            placed = PlacedOrder(created.as_order(), False)
        await self.hooks.after(self.name, "create_order")
        return placed

    async def cancel_order(self, order_id: UUID, expected_version: int | None = None) -> bool:
        return await self.transition(order_id, OrderStatus.CANCELLED, expected_version)

    async def transition(
        self, order_id: UUID, target: OrderStatus, expected_version: int | None = None
    ) -> bool:
        """Move the order to ``target`` (a cancellation queues its return); False when it
        cannot be."""
        await self.hooks.before(self.name, "transition")
        async with self._lock(order_id):
            found = self.orders.get(order_id)
            moved = (
                found is not None
                and can_transition(found.status, target)
                and expected_version in (None, found.version)
            )
            if found is not None and moved:
                found.status = target
                found.version += 1
                if target in RESTOCKING_STATUSES:
                    self.returns.append(order_id)
        await self.hooks.after(self.name, "transition")
        return moved

    def order_lock(self, order_id: UUID) -> asyncio.Lock:
        """The lock of the order's row."""
        return self._locks.setdefault(order_id, asyncio.Lock())

    def _lock(self, order_id: UUID) -> asyncio.Lock:
        return self.order_lock(order_id)


async def move_customer(
    catalog: InMemoryCatalog, source: InMemoryShard, target: InMemoryShard, customer_id: UUID
) -> list[UUID]:
    """Move a customer's orders from ``source`` to ``target`` as ``fanout shards move`` does
    (``gateway.sharding.mover``), each step at once: the orders go to the target with their
    decisions (one the target holds already is kept), queued returns, idempotency keys and
    payments, and the source keeps their tombstones (the source's commit); the catalog's
    reservations name the target (its step); the source forgets the orders' decisions (the
    last step). The orders moved."""
    moving = [o for o, order in source.orders.items() if order.customer_id == customer_id]
    for order_id in moving:
        target.orders[order_id] = source.orders.pop(order_id)
        if order_id in source.decisions:
            target.decisions.setdefault(order_id, source.decisions[order_id])
        source.moved[order_id] = target.name
    target.returns += [order_id for order_id in source.returns if order_id in moving]
    source.returns = [order_id for order_id in source.returns if order_id not in moving]
    for key in [key for key, (_, order_id) in source.keys.items() if order_id in moving]:
        target.keys[key] = source.keys.pop(key)
    paid = [pid for pid, (paying, _) in source.payments.items() if paying.order_id in moving]
    for payment_id in paid:
        target.payments[payment_id] = source.payments.pop(payment_id)
    await catalog.name_shard(moving, target.name)
    for order_id in moving:
        source.decisions.pop(order_id, None)
    return moving


def units(catalog: InMemoryCatalog, product_id: UUID, statuses: set[ReservationStatus]) -> int:
    """The units of ``product_id`` in the catalog's reservations in ``statuses``."""
    return sum(
        quantity
        for found in catalog.reservations.values()
        if found.status in statuses
        for product, quantity in found.lines
        if product == product_id
    )
