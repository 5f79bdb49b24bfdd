"""Orders in PostgreSQL: placing them and moving them through the state machine.

These functions run inside a transaction the caller opened; they know the order tables' SQL
and nothing of the outbox or idempotency keys.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any, Protocol
from uuid import UUID

import asyncpg

from adapters.base import EventEnvelope
from gateway.errors import (
    IllegalTransition,
    InsufficientInventory,
    NotFound,
    ValidationError,
    VersionConflict,
)
from gateway.postgres import outbox
from gateway.postgres.database import Connection, fetch_required
from gateway.postgres.outbox import Event
from gateway.postgres.queries import query
from gateway.write_path.idempotency import KeyClaim, KeyTaken
from gateway.write_path.lifecycle import (
    INVENTORY_RELEASED,
    ORDER_STATUS_CHANGED,
    STATUS_EVENTS,
    PaymentStatus,
    Step,
)
from gateway.write_path.models import Order, OrderItem, PlaceOrderRequest
from gateway.write_path.order_status import RESTOCKING_STATUSES, OrderStatus, can_transition
from gateway.write_path.pricing import PricingPolicy, to_cents

ORDER_AGGREGATE = "order"


@dataclass(frozen=True)
class CustomerSummary:
    """The customer fields carried in order events."""

    id: UUID
    email: str
    first_name: str
    last_name: str

    def as_payload(self) -> dict[str, Any]:
        """The JSON form used in event payloads."""
        return {
            "id": str(self.id),
            "email": self.email,
            "first_name": self.first_name,
            "last_name": self.last_name,
        }


async def insert_order(
    connection: Connection,
    order_id: UUID,
    request: PlaceOrderRequest,
    pricing: PricingPolicy,
    number_prefix: str,
    payment_timeout_seconds: float | None,
    key: KeyClaim | None = None,
    reserved: Mapping[UUID, Row] | None = None,
) -> tuple[Order, CustomerSummary]:
    """Check, price and insert order ``order_id`` with its items, taking units from inventory;
    with ``key``, claim that idempotency key for it first (raising :class:`KeyTaken` when
    another request holds it). With a payment timeout, the order awaits its payment.

    With ``reserved`` (the products' rows, as the catalog held them when it reserved their
    units: sharded mode), the products are neither read nor checked here and no units are
    taken.

    Two round trips: the key, customer, addresses and products (locked) in one, then the
    order, its items and the units taken in one statement.
    """
    rows = await connection.fetch(
        query("lock_order_inputs"),
        request.customer_id,
        list({request.billing_address_id, request.shipping_address_id}),
        [item.product_id for item in request.items] if reserved is None else [],
        key.scope if key else None,
        key.key if key else None,
        key.fingerprint if key else None,
        float(key.retention_seconds) if key else None,
        order_id,
    )
    first = rows[0]  # one row at least, whatever exists
    if key is not None and first["claimed"] is None:
        raise KeyTaken(key.key)
    customer = check_customer_inputs(first, request)
    products: Mapping[UUID, Row]
    if reserved is None:
        products = {row["id"]: row for row in rows if row["id"] is not None}
        check_products(request, products)
    else:
        products = reserved
    quantities = {item.product_id: item.quantity for item in request.items}
    unit_prices = {pid: to_cents(products[pid]["base_price"]) for pid in quantities}
    line_totals = {pid: unit_prices[pid] * quantities[pid] for pid in quantities}
    totals = pricing.totals(line_totals.values())
    lines = await connection.fetch(
        query("insert_order_with_items"),
        order_id,
        number_prefix,
        request.customer_id,
        totals.subtotal,
        totals.tax_amount,
        totals.shipping_amount,
        totals.total_amount,
        pricing.currency,
        request.billing_address_id,
        request.shipping_address_id,
        request.customer_segment,
        request.metadata,
        request.notes,
        list(quantities),
        [products[pid]["name"] for pid in quantities],
        [products[pid]["sku"] for pid in quantities],
        list(quantities.values()),
        [unit_prices[pid] for pid in quantities],
        [line_totals[pid] for pid in quantities],
        payment_timeout_seconds,
        reserved is None,
    )
    order = Order(
        **{key: lines[0][key] for key in _ORDER_COLUMNS},
        items=[
            OrderItem(
                id=line["item_id"], **{key: line[key] for key in _ITEM_COLUMNS if key != "id"}
            )
            for line in lines
        ],
    )
    return order, customer


async def customer_inputs(
    connection: Connection, request: PlaceOrderRequest, key_scope: str, key: str | None
) -> asyncpg.Record:
    """What the shard alone can check of a new order before the catalog reserves its units
    (sharded mode), in one round trip: the customer, the given addresses and whose they are,
    and the earlier request's ``request_hash`` and ``resource_id`` while ``key`` is kept."""
    return await fetch_required(
        connection,
        query("customer_inputs"),
        request.customer_id,
        list({request.billing_address_id, request.shipping_address_id}),
        key_scope,
        key,
    )


def check_customer_inputs(row: Row, request: PlaceOrderRequest) -> CustomerSummary:
    """The order's customer exists and is active, and both addresses are the customer's (a
    row of :func:`customer_inputs` or ``lock_order_inputs``); the customer."""
    customer = _active_customer(row, request.customer_id)
    check_addresses(request, dict(zip(row["address_ids"], row["address_owners"], strict=True)))
    return customer


@dataclass(frozen=True)
class LockedOrder:
    """An order's row, locked for the rest of the transaction: what a change decides on."""

    id: UUID
    status: OrderStatus
    version: int
    payment_status: PaymentStatus | None
    total_amount: Decimal
    currency: str


@dataclass(frozen=True)
class OrderChange:
    """An order after a change, and the events that record it (one per step, in order)."""

    order: Order
    events: list[Event]


async def lock_order(connection: Connection, order_id: UUID) -> LockedOrder:
    """Lock the order's row until the transaction ends; ``NotFound`` if there is none."""
    row = await connection.fetchrow(query("lock_order"), order_id)
    if row is None:
        raise NotFound("order", order_id, field="order_id")
    payment = row["payment_status"]
    return LockedOrder(
        row["id"],
        OrderStatus(row["status"]),
        row["version"],
        PaymentStatus(payment) if payment is not None else None,
        row["total_amount"],
        row["currency"],
    )


async def change_status(
    connection: Connection,
    order_id: UUID,
    target: OrderStatus,
    expected_version: int | None,
) -> OrderChange:
    """Move an order to ``target`` as a caller asked (one ``order.status_changed`` event)."""
    current = await lock_order(connection, order_id)
    check_transition(order_id, current.status, current.version, target, expected_version)
    step = Step(ORDER_STATUS_CHANGED, target, current.payment_status)
    return await apply_steps(connection, current, [step])


async def transition(
    connection: Connection,
    order_id: UUID,
    target: OrderStatus,
    expected_version: int | None,
) -> Order:
    """In a transaction of its own on ``connection``: :func:`change_status` and its events in
    the outbox."""
    async with connection.transaction():
        change = await change_status(connection, order_id, target, expected_version)
        await outbox.append_order_events(connection, change.events)
    return change.order


async def apply_steps(
    connection: Connection,
    current: LockedOrder,
    steps: Sequence[Step],
    details: Mapping[str, Mapping[str, Any]] | None = None,
) -> OrderChange:
    """Apply ``steps`` to the locked order: one version each, the last one's statuses kept;
    entering a restocking status returns the order's units. ``details`` adds fields to the
    payload of the event of each type it names."""
    final = steps[-1]
    if final.status in RESTOCKING_STATUSES and current.status not in RESTOCKING_STATUSES:
        await connection.execute(query("lock_order_products"), current.id)
        await connection.execute(query("return_inventory"), current.id)
    payment = final.payment_status.value if final.payment_status is not None else None
    row = await fetch_required(
        connection, query("advance_order"), current.id, final.status.value, payment, len(steps)
    )
    items = await connection.fetch(query("order_items_of"), current.id)
    customer = await _customer_summary(connection, row["customer_id"])
    order = _order(row, items)
    events = []
    previous = current.status
    for offset, step in enumerate(steps, start=1 - len(steps)):
        state = order.model_copy(
            update={
                "version": order.version + offset,
                "status": step.status,
                "payment_status": step.payment_status,
            }
        )
        extra = dict((details or {}).get(step.event_type, {}))
        if step.event_type in STATUS_EVENTS:
            extra["previous_status"] = previous.value
            previous = step.status
        if step.event_type == INVENTORY_RELEASED:
            extra["released"] = [
                {"product_id": str(item.product_id), "quantity": item.quantity}
                for item in order.items
            ]
        events.append(order_event(state, step.event_type, customer, details=extra))
    return OrderChange(order, events)


async def fetch_order(connection: Connection, order_id: UUID) -> Order:
    """The order with its items, as PostgreSQL holds it now."""
    row = await connection.fetchrow(query("get_order"), order_id)
    if row is None:
        raise NotFound("order", order_id, field="order_id")
    items = await connection.fetch(query("order_items_of"), order_id)
    if not items:
        # Every order has items: none means a move took the order away between the reads.
        raise NotFound("order", order_id, field="order_id")
    return _order(row, items)


async def customer_orders(
    connection: Connection,
    customer_id: UUID,
    limit: int,
    after: tuple[datetime, UUID] | None,
) -> list[Order]:
    """Up to ``limit`` of the customer's orders, newest first, after ``after`` (created_at,
    id) when given; ``NotFound`` if there is no such customer."""
    created_at, order_id = after if after is not None else (None, None)

    async def read_page() -> list[Order]:
        rows = await connection.fetch(
            query("customer_orders_page"), customer_id, created_at, order_id, limit
        )
        return await _orders_with_items(connection, rows)

    page = await read_page()
    # Asked after the page: a move that took the customer away between the reads leaves an
    # empty page, or orders without their items (every order has some).
    torn = not page or any(not order.items for order in page)
    if torn and not await connection.fetchval(query("customer_exists"), customer_id):
        raise NotFound("customer", customer_id, field="customer_id")
    if not page:
        # The customer is here, but may have arrived (a move's copy committed) only after the
        # page was read: read it once more, now that it is certainly here.
        page = await read_page()
    return page


async def current_orders(
    connection: Connection, after: UUID | None, since: datetime | None, limit: int
) -> list[tuple[Order, CustomerSummary]]:
    """Up to ``limit`` orders by id after ``after`` (changed since ``since`` when given), as
    PostgreSQL holds them now, each with its customer."""
    rows = await connection.fetch(query("orders_to_backfill"), after, since, limit)
    if not rows:
        return []
    customer_ids = list({row["customer_id"] for row in rows})
    customers = {
        row["id"]: CustomerSummary(row["id"], row["email"], row["first_name"], row["last_name"])
        for row in await connection.fetch(query("customer_summaries"), customer_ids)
    }
    placed = await _orders_with_items(connection, rows)
    return [(order, customers[order.customer_id]) for order in placed]


async def _orders_with_items(connection: Connection, rows: Sequence[asyncpg.Record]) -> list[Order]:
    """The orders of ``rows`` (in their order), with their items read in one query."""
    items = await connection.fetch(query("order_items_of_orders"), [row["id"] for row in rows])
    by_order: dict[UUID, list[asyncpg.Record]] = {row["id"]: [] for row in rows}
    for item in items:
        by_order[item["order_id"]].append(item)
    return [_order(row, by_order[row["id"]]) for row in rows]


def order_event(
    order: Order,
    event_type: str,
    customer: CustomerSummary,
    *,
    headers: Mapping[str, str] | None = None,
    details: Mapping[str, Any] | None = None,
) -> Event:
    """The outbox event carrying the order's full state at ``order.version``, with
    ``details`` (what the event itself says, such as the payment) beside it."""
    payload = order.model_dump(mode="json")
    payload["customer"] = customer.as_payload()
    payload.update(details or {})
    return Event(
        aggregate_type=ORDER_AGGREGATE,
        aggregate_id=str(order.id),
        event_type=event_type,
        version=order.version,
        payload=payload,
        headers=dict(headers or {}),
    )


def as_envelope(event: Event, sequence: int, occurred_at: datetime) -> EventEnvelope:
    """``event`` as a sink receives it, for writers that hand events to a sink themselves
    (the naive dual write, a backfill) rather than through the outbox and the relay."""
    return EventEnvelope(
        event_id=event.event_id,
        sequence=sequence,
        aggregate_type=event.aggregate_type,
        aggregate_id=event.aggregate_id,
        version=event.version,
        event_type=event.event_type,
        payload=event.payload,
        headers=event.headers,
        occurred_at=occurred_at,
    )


async def _customer_summary(connection: Connection, customer_id: UUID) -> CustomerSummary:
    row = await fetch_required(connection, query("get_customer_summary"), customer_id)
    return CustomerSummary(row["id"], row["email"], row["first_name"], row["last_name"])


def _active_customer(row: Row, customer_id: UUID) -> CustomerSummary:
    """The customer of a ``lock_order_inputs`` row, which must exist and be active."""
    if row["customer_id"] is None:
        raise NotFound("customer", customer_id, field="customer_id")
    if not row["customer_is_active"]:
        raise ValidationError.single("customer_id", f"customer {customer_id} is not active")
    return CustomerSummary(customer_id, row["email"], row["first_name"], row["last_name"])


def check_addresses(request: PlaceOrderRequest, owners: Mapping[UUID, UUID]) -> None:
    """Both addresses exist (``owners``: address id -> customer id) and are the customer's."""
    wanted = {
        "billing_address_id": request.billing_address_id,
        "shipping_address_id": request.shipping_address_id,
    }
    for field, address_id in wanted.items():
        if address_id not in owners:
            raise NotFound("address", address_id, field=field)
        if owners[address_id] != request.customer_id:
            raise ValidationError.single(
                field, f"address {address_id} does not belong to customer {request.customer_id}"
            )


class Row(Protocol):
    """A database row read by column name (an ``asyncpg.Record``, or a dict in tests)."""

    def __getitem__(self, key: str, /) -> Any: ...


def check_products(request: PlaceOrderRequest, products: Mapping[UUID, Row]) -> None:
    """Every item's product exists, is for sale, and has the units asked for in stock."""
    for index, item in enumerate(request.items):
        product = products.get(item.product_id)
        field = f"items[{index}].product_id"
        if product is None:
            raise NotFound("product", item.product_id, field=field)
        if not product["is_active"]:
            raise ValidationError.single(field, f"product {item.product_id} is not for sale")
    for item in request.items:
        product = products[item.product_id]
        if product["inventory_quantity"] < item.quantity:
            raise InsufficientInventory(
                item.product_id, product["sku"], item.quantity, product["inventory_quantity"]
            )


def check_transition(
    order_id: UUID,
    current: OrderStatus,
    current_version: int,
    target: OrderStatus,
    expected_version: int | None,
) -> None:
    """The order is at the version the caller expects (if it said), and may move to
    ``target`` from where it is."""
    if expected_version is not None and current_version != expected_version:
        raise VersionConflict(order_id, expected_version, current_version)
    if not can_transition(current, target):
        raise IllegalTransition(order_id, current, target)


def _order(row: asyncpg.Record, items: list[asyncpg.Record]) -> Order:
    return Order(
        **{key: row[key] for key in _ORDER_COLUMNS},
        items=[OrderItem(**{key: item[key] for key in _ITEM_COLUMNS}) for item in items],
    )


_ORDER_COLUMNS = tuple(name for name in Order.model_fields if name != "items")
_ITEM_COLUMNS = tuple(OrderItem.model_fields)
