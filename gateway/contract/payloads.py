"""The payloads of the gateway's own events, as the Kafka sink publishes them (JSON values).

An order event carries the order's full state at its version (the :class:`Order` record the
API returns) and the customer's summary, plus what the event itself says (the status before a
status change, the payment, the units released, why the order was cancelled). The models
extend the records the write path stores, so a field added there is in the contract too; they
forbid other fields, so a payload carrying one the contract does not state fails to validate.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from gateway.payments.decision import PaymentOutcome
from gateway.write_path.models import MONEY_PATTERN, Customer, Order
from gateway.write_path.order_status import OrderStatus

MoneyText = Annotated[str, StringConstraints(pattern=MONEY_PATTERN)]


class _Closed(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CustomerOfOrder(_Closed):
    """The customer an order belongs to, as the order's events carry it."""

    id: UUID
    email: str
    first_name: str
    last_name: str


class OrderState(Order):
    """The order at the event's version, with its customer."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    customer: CustomerOfOrder = Field(description="The customer who placed the order.")


class OrderStatusChangedPayload(OrderState):
    """The order after a status change, and the status it left."""

    previous_status: OrderStatus = Field(description="The order's status before this event.")


class OrderCancelledPayload(OrderStatusChangedPayload):
    """A pending order cancelled by its payment: the payment failed, or never came in time."""

    reason: Literal["payment_failed", "payment_timeout"] = Field(
        description="'payment_failed': the payment failed; 'payment_timeout': no payment came "
        "before the order's payment deadline."
    )


class PaymentOfOrder(_Closed):
    """A payment provider's notification, as recorded against the order."""

    payment_id: str = Field(description="The provider's id of the payment.")
    status: Literal["succeeded", "failed"] = Field(description="What the provider reported.")
    amount: MoneyText = Field(description="The amount paid, in the order's currency.")
    currency: Annotated[str, StringConstraints(pattern=r"^[A-Z]{3}$")]
    occurred_at: datetime = Field(description="When the provider says the payment happened.")
    outcome: PaymentOutcome = Field(description="What the payment did to the order.")


class PaymentRecordedPayload(OrderState):
    """The order after a payment notification, with the payment."""

    payment: PaymentOfOrder


class UnitsOfProduct(_Closed):
    """Units of one product."""

    product_id: UUID
    quantity: int = Field(gt=0)


class InventoryReleasedPayload(OrderState):
    """The order whose units went back to inventory (on its way to being cancelled)."""

    released: list[UnitsOfProduct] = Field(description="The units returned, per product.")


class CustomerCreatedPayload(Customer):
    """A new customer with its addresses."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class ReservationPayload(_Closed):
    """Sharded mode, the catalog's outbox: an order's units held, given back or taken again in
    the catalog's inventory (the reservation's id is the order's)."""

    order_id: UUID
    shard: str = Field(description="The shard that holds (or was to hold) the order.")
    customer_id: UUID
    items: list[UnitsOfProduct] = Field(description="The reservation's units, per product.")
