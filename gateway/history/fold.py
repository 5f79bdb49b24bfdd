"""Rebuilding an order from its stream: what each event changes, applied in version order.

Each event carries the order's full state, but the fold takes from it only what the event's
type says that event changes (see :mod:`gateway.write_path.lifecycle`), so a missing, extra or
mistyped event shows as a difference from the ``orders`` row.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from decimal import Decimal
from typing import Any, Protocol

from gateway.write_path.lifecycle import (
    INVENTORY_RELEASED,
    ORDER_PLACED,
    PAYMENT_EVENTS,
    STATUS_EVENTS,
)


class StreamEvent(Protocol):
    """What the fold reads of an event."""

    @property
    def version(self) -> int: ...

    @property
    def event_type(self) -> str: ...

    @property
    def payload(self) -> Mapping[str, Any]: ...


class BrokenStream(ValueError):
    """A stream the fold cannot apply: it does not start with ``order.placed`` at version 1,
    skips a version, or holds an event type no order has."""


@dataclass(frozen=True)
class OrderState:
    """The fields of an order that its events determine."""

    status: str
    payment_status: str | None
    version: int
    total_amount: Decimal
    currency: str
    updated_at: datetime
    lines: tuple[tuple[str, int], ...]
    """(product id, quantity) per item, by product id."""


def fold(events: Iterable[StreamEvent]) -> OrderState:
    """The order its ``events`` (in version order) leave."""
    state: OrderState | None = None
    for event in events:
        payload = event.payload
        if state is None:
            if event.event_type != ORDER_PLACED or event.version != 1:
                raise BrokenStream(
                    f"starts with {event.event_type} at version {event.version}, "
                    f"not {ORDER_PLACED} at version 1"
                )
            state = OrderState(
                status=payload["status"],
                payment_status=payload.get("payment_status"),
                version=1,
                total_amount=Decimal(payload["total_amount"]),
                currency=payload["currency"],
                updated_at=_time(payload["updated_at"]),
                lines=_lines(payload["items"]),
            )
            continue
        if event.version != state.version + 1:
            raise BrokenStream(f"version {event.version} follows version {state.version}")
        state = replace(state, version=event.version, updated_at=_time(payload["updated_at"]))
        if event.event_type in STATUS_EVENTS:
            state = replace(state, status=payload["status"])
        elif event.event_type in PAYMENT_EVENTS:
            state = replace(state, payment_status=payload["payment_status"])
        elif event.event_type != INVENTORY_RELEASED:
            raise BrokenStream(f"version {event.version} is a {event.event_type} event")
    if state is None:
        raise BrokenStream("no events")
    return state


def differences(folded: OrderState, stored: OrderState) -> list[str]:
    """The names of the fields in which the fold and the stored order differ."""
    return [
        name
        for name in OrderState.__dataclass_fields__
        if getattr(folded, name) != getattr(stored, name)
    ]


def _time(value: str) -> datetime:
    return datetime.fromisoformat(value)


def _lines(items: Iterable[Mapping[str, Any]]) -> tuple[tuple[str, int], ...]:
    return tuple(sorted((str(item["product_id"]), int(item["quantity"])) for item in items))
