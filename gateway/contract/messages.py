"""Every event the gateway itself appends to the outbox: its type, its aggregate type (and so
its topic), what it means, and the models of its payload and headers.

Events a service appends with ``Gateway.publish`` are its own: the Kafka sink publishes them
just the same (on ``<topic_prefix><aggregate type>``), but their shapes are the service's.
"""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import BaseModel

from gateway.contract.headers import OrderPlacedHeaders, RecordHeaders, SnapshotHeaders
from gateway.contract.payloads import (
    CustomerCreatedPayload,
    InventoryReleasedPayload,
    OrderCancelledPayload,
    OrderState,
    OrderStatusChangedPayload,
    PaymentRecordedPayload,
    ReservationPayload,
)
from gateway.sharding.reservations import (
    INVENTORY_RESERVED,
    INVENTORY_RETAKEN,
    RESERVATION_AGGREGATE,
)
from gateway.write_path.customers import CUSTOMER_AGGREGATE, CUSTOMER_CREATED
from gateway.write_path.lifecycle import (
    INVENTORY_RELEASED,
    ORDER_CANCELLED,
    ORDER_CONFIRMED,
    ORDER_PLACED,
    ORDER_SNAPSHOT,
    ORDER_STATUS_CHANGED,
    PAYMENT_FAILED,
    PAYMENT_MISMATCH,
    PAYMENT_PROCESSED,
    PAYMENT_REFUND_REQUIRED,
    PAYMENT_TIMED_OUT,
)
from gateway.write_path.orders import ORDER_AGGREGATE

INVENTORY_RETURNED = "inventory.returned"
"""A reservation returned (``Settlement.RETURN``'s event)."""


@dataclass(frozen=True)
class Aggregate:
    """An aggregate type whose events the gateway appends (one topic each)."""

    type: str
    title: str
    description: str


@dataclass(frozen=True)
class EventMessage:
    """One event type of one aggregate type, as a record on Kafka."""

    id: str
    """The message's id in the AsyncAPI document."""
    event_type: str
    aggregate_type: str
    summary: str
    payload: type[BaseModel]
    headers: type[RecordHeaders] = RecordHeaders


AGGREGATES = (
    Aggregate(
        ORDER_AGGREGATE,
        "Orders",
        "Every event of an order's life, keyed by the order's id. Each carries the order's full "
        "state at its version (so a consumer can act on any one alone) and the customer's "
        "summary; each bumps the order's version by one.",
    ),
    Aggregate(
        CUSTOMER_AGGREGATE,
        "Customers",
        "Customers as they are created, keyed by the customer's id.",
    ),
    Aggregate(
        RESERVATION_AGGREGATE,
        "Inventory reservations (sharded mode)",
        "Sharded mode only, from the catalog's outbox: the units an order holds in the "
        "catalog's inventory, taken, given back or taken again, keyed by the order's id.",
    ),
)

MESSAGES = (
    EventMessage(
        "orderPlaced",
        ORDER_PLACED,
        ORDER_AGGREGATE,
        "An order was placed (version 1): its units are taken from inventory.",
        OrderState,
        OrderPlacedHeaders,
    ),
    EventMessage(
        "orderStatusChanged",
        ORDER_STATUS_CHANGED,
        ORDER_AGGREGATE,
        "A caller moved the order to another status (a cancellation or a refund returns its "
        "units to inventory).",
        OrderStatusChangedPayload,
    ),
    EventMessage(
        "orderConfirmed",
        ORDER_CONFIRMED,
        ORDER_AGGREGATE,
        "Its payment confirmed a pending order (right after payment.processed).",
        OrderStatusChangedPayload,
    ),
    EventMessage(
        "orderCancelled",
        ORDER_CANCELLED,
        ORDER_AGGREGATE,
        "A pending order was cancelled because its payment failed or never came (right after "
        "inventory.released).",
        OrderCancelledPayload,
    ),
    EventMessage(
        "paymentProcessed",
        PAYMENT_PROCESSED,
        ORDER_AGGREGATE,
        "A payment of the order's amount succeeded: the order is paid.",
        PaymentRecordedPayload,
    ),
    EventMessage(
        "paymentFailed",
        PAYMENT_FAILED,
        ORDER_AGGREGATE,
        "A payment failed: a pending order is cancelled (inventory.released and "
        "order.cancelled follow); for an order no longer waiting, it is recorded only.",
        PaymentRecordedPayload,
    ),
    EventMessage(
        "paymentMismatch",
        PAYMENT_MISMATCH,
        ORDER_AGGREGATE,
        "A payment succeeded with an amount or currency that is not the order's: recorded, "
        "the order not confirmed; someone must act.",
        PaymentRecordedPayload,
    ),
    EventMessage(
        "paymentRefundRequired",
        PAYMENT_REFUND_REQUIRED,
        ORDER_AGGREGATE,
        "A payment succeeded for an order that cannot take it (cancelled, or paid already): "
        "the money must be refunded.",
        PaymentRecordedPayload,
    ),
    EventMessage(
        "paymentTimedOut",
        PAYMENT_TIMED_OUT,
        ORDER_AGGREGATE,
        "No payment came before the order's payment deadline (inventory.released and "
        "order.cancelled follow).",
        OrderState,
    ),
    EventMessage(
        "orderInventoryReleased",
        INVENTORY_RELEASED,
        ORDER_AGGREGATE,
        "The units of an order being cancelled by its payment went back to inventory.",
        InventoryReleasedPayload,
    ),
    EventMessage(
        "orderSnapshot",
        ORDER_SNAPSHOT,
        ORDER_AGGREGATE,
        "Not an event of the order's life: its current state, sent only by `fanout backfill` "
        "to the sink it names (its event id is derived from the order and version, and may "
        "repeat a version already published).",
        OrderState,
        SnapshotHeaders,
    ),
    EventMessage(
        "customerCreated",
        CUSTOMER_CREATED,
        CUSTOMER_AGGREGATE,
        "A customer was created, with its addresses (version 1).",
        CustomerCreatedPayload,
    ),
    EventMessage(
        "inventoryReserved",
        INVENTORY_RESERVED,
        RESERVATION_AGGREGATE,
        "An order's units were taken from the catalog's inventory and held for it, before the "
        "order exists in its shard.",
        ReservationPayload,
    ),
    EventMessage(
        "inventoryReleased",
        INVENTORY_RELEASED,
        RESERVATION_AGGREGATE,
        "A held reservation's units went back to inventory: its order was never created.",
        ReservationPayload,
    ),
    EventMessage(
        "inventoryReturned",
        INVENTORY_RETURNED,
        RESERVATION_AGGREGATE,
        "A reservation's units went back to inventory: its order was cancelled.",
        ReservationPayload,
    ),
    EventMessage(
        "inventoryRetaken",
        INVENTORY_RETAKEN,
        RESERVATION_AGGREGATE,
        "The units of a released or returned reservation were taken again: its order exists "
        "after all.",
        ReservationPayload,
    ),
)
"""Every event the gateway appends, one message each."""
