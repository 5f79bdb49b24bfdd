"""Payment notifications for tests, as a provider would send them."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from gateway import Order


def notification(
    order: Order,
    status: str = "succeeded",
    *,
    amount: str | None = None,
    currency: str | None = None,
    payment_id: str | None = None,
) -> dict[str, Any]:
    """A notification for ``order``: by default, its full amount paid."""
    return {
        "payment_id": payment_id or f"pay_{uuid.uuid4().hex}",
        "order_id": str(order.id),
        "status": status,
        "amount": amount if amount is not None else str(order.total_amount),
        "currency": currency or order.currency,
        "occurred_at": datetime.now(UTC).isoformat(),
    }
