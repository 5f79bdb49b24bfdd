"""The order projections the stores hold, as plain functions of an order event.

Each store's adapter turns these into its own writes. An order event's payload carries the
order's full state at ``version`` (see ``gateway.write_path.orders.order_event``).
"""

from __future__ import annotations

from typing import Any

from adapters.base import EventEnvelope

ORDER_EVENT_TYPES = (
    "order.placed",
    "order.status_changed",
    "order.confirmed",
    "order.cancelled",
    "payment.processed",
    "payment.failed",
    "payment.mismatch",
    "payment.timed_out",
    "payment.refund_required",
    "inventory.released",
    "order.snapshot",
)
"""Every event of an order's stream (each bumps the order's version and carries its state),
and the snapshot of an order's current state that a backfill sends."""


class ProjectionError(ValueError):
    """An event cannot be mapped to a store's projection (a permanent failure)."""


def _field(payload: dict[str, Any], name: str) -> Any:
    try:
        return payload[name]
    except KeyError:
        raise ProjectionError(f"order event payload has no {name!r}") from None


def order_document(event: EventEnvelope) -> dict[str, Any]:
    """The full order document: ids, customer, items, metadata, status, totals, timestamps."""
    payload = event.payload
    return {
        "order_id": event.aggregate_id,
        "order_number": _field(payload, "order_number"),
        "customer_id": _field(payload, "customer_id"),
        "customer": payload.get("customer"),
        "status": _field(payload, "status"),
        "payment_status": payload.get("payment_status"),
        "items": _field(payload, "items"),
        "metadata": payload.get("metadata", {}),
        "customer_segment": payload.get("customer_segment"),
        "totals": {
            "subtotal": _field(payload, "subtotal"),
            "tax_amount": _field(payload, "tax_amount"),
            "shipping_amount": _field(payload, "shipping_amount"),
            "total_amount": _field(payload, "total_amount"),
            "currency": payload.get("currency"),
        },
        "version": event.version,
        "created_at": _field(payload, "created_at"),
        "updated_at": _field(payload, "updated_at"),
    }


def order_summary(event: EventEnvelope) -> dict[str, Any]:
    """The short summary: status, total and item count."""
    items = _field(event.payload, "items")
    return {
        "order_id": event.aggregate_id,
        "status": _field(event.payload, "status"),
        "payment_status": event.payload.get("payment_status"),
        "total": _field(event.payload, "total_amount"),
        "item_count": sum(int(item["quantity"]) for item in items),
        "version": event.version,
    }
