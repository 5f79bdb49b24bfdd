"""The payment rule: what each notification does to an order, whatever state it is in."""

from __future__ import annotations

import pytest

from adapters.projections import ORDER_EVENT_TYPES
from gateway.payments.decision import (
    PaymentOutcome,
    decide_payment,
    payment_steps,
    timeout_steps,
)
from gateway.write_path.lifecycle import (
    INVENTORY_RELEASED,
    ORDER_CANCELLED,
    ORDER_CONFIRMED,
    ORDER_SNAPSHOT,
    ORDER_STREAM_EVENTS,
    PAYMENT_FAILED,
    PAYMENT_PROCESSED,
    PAYMENT_TIMED_OUT,
    PaymentStatus,
)
from gateway.write_path.order_status import OrderStatus, can_transition

S = OrderStatus
P = PaymentStatus
Outcome = PaymentOutcome


@pytest.mark.parametrize(
    ("status", "payment", "succeeded", "matches", "outcome"),
    [
        (S.PENDING, P.AWAITING, True, True, Outcome.CONFIRMED),
        (S.PENDING, None, True, True, Outcome.CONFIRMED),
        (S.PENDING, P.MISMATCHED, True, True, Outcome.CONFIRMED),
        (S.PENDING, P.AWAITING, True, False, Outcome.MISMATCH),
        (S.PENDING, P.AWAITING, False, True, Outcome.CANCELLED),
        (S.PENDING, P.AWAITING, False, False, Outcome.CANCELLED),
        (S.CANCELLED, P.EXPIRED, True, True, Outcome.REFUND_REQUIRED),
        (S.CANCELLED, P.EXPIRED, True, False, Outcome.REFUND_REQUIRED),
        (S.CANCELLED, P.FAILED, True, True, Outcome.REFUND_REQUIRED),
        (S.REFUNDED, P.PAID, True, True, Outcome.REFUND_REQUIRED),
        (S.CONFIRMED, P.PAID, True, True, Outcome.REFUND_REQUIRED),
        (S.SHIPPED, P.PAID, True, True, Outcome.REFUND_REQUIRED),
        (S.CONFIRMED, P.AWAITING, True, True, Outcome.ATTACHED),
        (S.PROCESSING, None, True, True, Outcome.ATTACHED),
        (S.CONFIRMED, P.AWAITING, True, False, Outcome.MISMATCH),
        (S.CANCELLED, P.EXPIRED, False, True, Outcome.IGNORED),
        (S.CONFIRMED, P.PAID, False, True, Outcome.IGNORED),
    ],
)
def test_the_outcome_of_a_payment(
    status: OrderStatus,
    payment: PaymentStatus | None,
    succeeded: bool,
    matches: bool,
    outcome: PaymentOutcome,
) -> None:
    assert decide_payment(status, payment, succeeded, matches) is outcome


def test_a_confirming_payment_is_processed_then_confirms() -> None:
    steps = payment_steps(Outcome.CONFIRMED, S.PENDING, P.AWAITING)
    assert [(s.event_type, s.status, s.payment_status) for s in steps] == [
        (PAYMENT_PROCESSED, S.PENDING, P.PAID),
        (ORDER_CONFIRMED, S.CONFIRMED, P.PAID),
    ]


def test_a_failed_payment_and_a_timeout_are_compensated_the_same_way() -> None:
    failed = payment_steps(Outcome.CANCELLED, S.PENDING, P.AWAITING)
    timed_out = timeout_steps()
    assert [s.event_type for s in failed] == [PAYMENT_FAILED, INVENTORY_RELEASED, ORDER_CANCELLED]
    assert [s.event_type for s in timed_out] == [
        PAYMENT_TIMED_OUT,
        INVENTORY_RELEASED,
        ORDER_CANCELLED,
    ]
    assert failed[-1].status is timed_out[-1].status is S.CANCELLED
    assert (failed[-1].payment_status, timed_out[-1].payment_status) == (P.FAILED, P.EXPIRED)


@pytest.mark.parametrize("payment", [None, *PaymentStatus])
@pytest.mark.parametrize("status", list(OrderStatus))
def test_every_payment_moves_the_order_only_where_the_state_machine_allows(
    status: OrderStatus, payment: PaymentStatus | None
) -> None:
    for succeeded in (True, False):
        for matches in (True, False):
            outcome = decide_payment(status, payment, succeeded, matches)
            steps = payment_steps(outcome, status, payment)
            assert steps and all(step.event_type in ORDER_STREAM_EVENTS for step in steps)
            before = status
            for step in steps:
                assert step.status is before or can_transition(before, step.status)
                before = step.status


def test_an_ignored_failure_leaves_the_payment_status_as_it_was() -> None:
    [step] = payment_steps(Outcome.IGNORED, S.CONFIRMED, P.PAID)
    assert (step.event_type, step.status, step.payment_status) == (
        PAYMENT_FAILED,
        S.CONFIRMED,
        P.PAID,
    )


def test_every_store_projects_every_event_of_an_order_and_its_snapshot() -> None:
    # Every event bumps the order's version: a store skipping one would look stale to verify.
    assert set(ORDER_EVENT_TYPES) == ORDER_STREAM_EVENTS | {ORDER_SNAPSHOT}
