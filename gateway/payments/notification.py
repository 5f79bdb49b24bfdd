"""A payment provider's notification, and what recording it did."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, Literal
from uuid import UUID

from pydantic import AwareDatetime, BaseModel, BeforeValidator, ConfigDict, StringConstraints

from gateway.payments.decision import PaymentOutcome
from gateway.write_path.models import NO_NUL, Money, Order

PaymentId = Annotated[str, StringConstraints(min_length=1, max_length=255, pattern=NO_NUL)]


def _time_text(value: object) -> object:
    # A JSON time is a string; pydantic's lax datetime would read 0 as 1970-01-01.
    if isinstance(value, bool | int | float):
        raise ValueError('must be a date-time string such as "2026-11-30T10:00:00Z"')
    return value


OccurredAt = Annotated[AwareDatetime, BeforeValidator(_time_text)]


class PaymentNotification(BaseModel):
    """What a provider says happened to a payment for an order.

    Fields a provider adds beyond these are ignored, as webhook receivers do, so a provider's
    additions never make its deliveries fail.
    """

    model_config = ConfigDict(extra="ignore", frozen=True)

    payment_id: PaymentId
    """The provider's id of the payment: a redelivery carries the same one."""
    order_id: UUID
    status: Literal["succeeded", "failed"]
    amount: Money
    currency: Annotated[str, StringConstraints(pattern=r"^[A-Z]{3}$")]
    occurred_at: OccurredAt

    @property
    def succeeded(self) -> bool:
        """Whether the money was taken."""
        return self.status == "succeeded"

    def as_payload(self, outcome: PaymentOutcome) -> dict[str, Any]:
        """The ``payment`` member of the events this notification appends."""
        return {
            "payment_id": self.payment_id,
            "status": self.status,
            "amount": str(self.amount),
            "currency": self.currency,
            "occurred_at": self.occurred_at.isoformat(),
            "outcome": outcome.value,
        }


@dataclass(frozen=True)
class RecordedPayment:
    """What :meth:`gateway.Gateway.record_payment` did."""

    payment_id: str
    outcome: PaymentOutcome
    replayed: bool
    """True when this payment id was recorded before: nothing was written now."""
    order: Order
    """The order as it is after the payment."""
