"""The decisions of backfill and rewind: when to resume, how long to wait for the rate, what
a backfill sends, where a rewind moves a position."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from gateway.errors import ValidationError
from gateway.operations.backfill import (
    BackfillState,
    pause_for_rate,
    resume_point,
    snapshot_envelope,
)
from gateway.operations.rewind import rewound_position
from gateway.write_path.models import Order
from gateway.write_path.orders import CustomerSummary

SINCE = datetime(2026, 11, 1, tzinfo=UTC)
UNFINISHED = BackfillState(SINCE, uuid.uuid4(), 1_500, finished=False)


def test_an_unfinished_backfill_of_the_same_scope_is_resumed() -> None:
    assert resume_point(UNFINISHED, SINCE, restart=False) is UNFINISHED


def test_a_finished_or_missing_backfill_starts_afresh_as_does_restart() -> None:
    finished = BackfillState(SINCE, uuid.uuid4(), 9, finished=True)
    assert resume_point(None, SINCE, restart=False) is None
    assert resume_point(finished, SINCE, restart=False) is None
    assert resume_point(UNFINISHED, SINCE, restart=True) is None
    assert resume_point(UNFINISHED, None, restart=True) is None


def test_an_unfinished_backfill_of_another_scope_is_not_silently_replaced() -> None:
    with pytest.raises(ValidationError) as raised:
        resume_point(UNFINISHED, None, restart=False)
    assert raised.value.field == "--since" and "--restart" in str(raised.value)


def test_the_rate_paces_the_batches() -> None:
    assert pause_for_rate(500, 0.2, None) == 0
    assert pause_for_rate(500, 0.2, 1_000) == pytest.approx(0.3)
    assert pause_for_rate(500, 0.9, 1_000) == 0


def test_a_snapshot_is_the_order_at_its_version_with_a_stable_id() -> None:
    now = datetime.now(UTC)
    order = Order(
        id=uuid.uuid4(),
        order_number="ORD-1",
        customer_id=uuid.uuid4(),
        status="shipped",
        subtotal=Decimal("10.00"),
        tax_amount=Decimal("0.80"),
        shipping_amount=Decimal("5.00"),
        total_amount=Decimal("15.80"),
        currency="USD",
        billing_address_id=None,
        shipping_address_id=None,
        customer_segment=None,
        metadata={},
        notes=None,
        version=7,
        created_at=now,
        updated_at=now,
        items=[],
    )
    customer = CustomerSummary(order.customer_id, "a@example.com", "A", "B")
    first, again = snapshot_envelope(order, customer), snapshot_envelope(order, customer)
    assert first.event_type == "order.snapshot"
    assert (first.version, first.aggregate_id, first.occurred_at) == (7, str(order.id), now)
    assert first.payload["status"] == "shipped" and first.payload["total_amount"] == "15.80"
    assert first.event_id == again.event_id
    later = snapshot_envelope(order.model_copy(update={"version": 8}), customer)
    assert later.event_id != first.event_id


def test_a_rewind_moves_a_partition_to_just_before_its_first_event_since_the_time() -> None:
    assert rewound_position((900, 50), (700, 20)) == (700, 19)
    assert rewound_position((900, 50), (900, 50)) == (900, 49)
    assert rewound_position((900, 50), None) is None  # nothing kept since the time
    assert rewound_position((900, 50), (901, 51)) is None  # not delivered yet: nothing to redo
