"""What must hold of the saga's storage: after every step (stock conservation, no live order
without its units, a cancelled order's committed units queued for return, one decision each),
after every sweep (what was due in each shard it reached is settled), after every step of the
payments (one outcome per payment id, each delivery answered it, no order both confirmed by a
payment and cancelled by the timeout), and at the end, once
everything expired and was swept (every reservation settled, committed units exactly those of
live orders)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from uuid import UUID

from gateway.payments.decision import PaymentOutcome
from gateway.sharding.decisions import Decision
from gateway.sharding.reservations import ReservationStatus
from gateway.sharding.sweeper import SweepResult
from gateway.write_path.lifecycle import (
    ORDER_CONFIRMED,
    PAYMENT_REFUND_REQUIRED,
    PAYMENT_TIMED_OUT,
)
from gateway.write_path.order_status import RESTOCKING_STATUSES
from simulation.saga_storage import InMemoryCatalog, InMemoryShard

HELD, COMMITTED = ReservationStatus.HELD, ReservationStatus.COMMITTED
GIVEN_BACK = {ReservationStatus.RELEASED, ReservationStatus.RETURNED}


def at_every_step(
    initial: Mapping[UUID, int], catalog: InMemoryCatalog, shards: Mapping[str, InMemoryShard]
) -> list[str]:
    """What breaks the rules that hold at any time."""
    found = _conservation(initial, catalog, {HELD, COMMITTED}, shards, live_only=False)
    for shard in shards.values():
        for order_id, order in shard.orders.items():
            reservation = catalog.reservations.get(order_id)
            status = reservation.status if reservation is not None else None
            if order.status not in RESTOCKING_STATUSES and status not in (HELD, COMMITTED):
                found.append(f"order {order_id} is {order.status} but its reservation {status}")
            if shard.decisions.get(order_id) is Decision.ABANDONED:
                found.append(f"order {order_id} exists and was abandoned")
        counts: dict[UUID, int] = {}
        for order_id, _ in shard.decision_log:
            counts[order_id] = counts.get(order_id, 0) + 1
        found += [f"order {o} was decided {n} times" for o, n in counts.items() if n > 1]
    for order_id, reservation in catalog.reservations.items():
        if reservation.status is not COMMITTED:
            continue
        shard = shards[reservation.shard]
        committed_to = shard.orders.get(order_id)
        if committed_to is None:
            found.append(f"reservation {order_id} is committed and its order does not exist")
        elif committed_to.status in RESTOCKING_STATUSES and order_id not in shard.returns:
            found.append(f"order {order_id} is cancelled, its units committed and not queued")
    return found


def at_the_end(
    initial: Mapping[UUID, int], catalog: InMemoryCatalog, shards: Mapping[str, InMemoryShard]
) -> list[str]:
    """What breaks the rules of a quiescent saga (everything expired and swept)."""
    found = _conservation(initial, catalog, {COMMITTED}, shards, live_only=True)
    for order_id, reservation in catalog.reservations.items():
        if reservation.status is HELD:
            found.append(f"reservation {order_id} is still held after the final sweep")
        order = shards[reservation.shard].orders.get(order_id)
        live = order is not None and order.status not in RESTOCKING_STATUSES
        if live != (reservation.status is COMMITTED):
            state = order.status if order is not None else "missing"
            found.append(f"order {order_id} is {state}, its reservation {reservation.status}")
    for shard in shards.values():
        found += [f"shard {shard.name}: return of {o} still queued" for o in shard.returns]
    return found


def of_payments(
    shards: Mapping[str, InMemoryShard], answers: Sequence[tuple[str, str, PaymentOutcome]]
) -> list[str]:
    """What breaks the payment rules: a payment id recorded more than once, a delivery
    answered other than what its id recorded, an order both confirmed by a payment and
    cancelled by the timeout without a refund_required payment recorded after both."""
    found = []
    for shard in shards.values():
        counts = Counter(payment_id for payment_id, _ in shard.payment_log)
        found += [f"payment {p} was recorded {n} times" for p, n in counts.items() if n > 1]
        for order_id, order in shard.orders.items():
            if ORDER_CONFIRMED not in order.events or PAYMENT_TIMED_OUT not in order.events:
                continue
            both = max(order.events.index(ORDER_CONFIRMED), order.events.index(PAYMENT_TIMED_OUT))
            if PAYMENT_REFUND_REQUIRED not in order.events[both:]:
                found.append(f"order {order_id} was confirmed by a payment and timed out")
    for shard_name, payment_id, outcome in answers:
        recorded = shards[shard_name].payments[payment_id][1]
        if recorded is not outcome:
            found.append(f"payment {payment_id} was answered {outcome}, recorded {recorded}")
    return found


def after_a_sweep(
    catalog: InMemoryCatalog,
    due: Mapping[str, list[UUID]],
    result: SweepResult,
    limit: int,
) -> list[str]:
    """What a sweep that ran must have done: settle every reservation that was due when it
    began in each shard it reached, when there were no more than ``limit`` (a shard that
    does not answer never holds up another)."""
    found = []
    for shard, order_ids in due.items():
        if shard in result.unreachable or len(order_ids) > limit:
            continue
        left = [o for o in order_ids if catalog.reservations[o].status is HELD]
        if left:
            found.append(
                f"a sweep that reached shard {shard} left {len(left)} of its {len(order_ids)}"
                f" due reservations held (unreachable: {sorted(result.unreachable)})"
            )
    return found


def _conservation(
    initial: Mapping[UUID, int],
    catalog: InMemoryCatalog,
    counted: set[ReservationStatus],
    shards: Mapping[str, InMemoryShard],
    *,
    live_only: bool,
) -> list[str]:
    found = []
    for product, stock in initial.items():
        taken = 0
        for order_id, reservation in catalog.reservations.items():
            if reservation.status not in counted:
                continue
            if live_only:
                order = shards[reservation.shard].orders.get(order_id)
                if order is None or order.status in RESTOCKING_STATUSES:
                    continue
            taken += sum(q for p, q in reservation.lines if p == product)
        if catalog.stock[product] + taken != stock:
            found.append(
                f"product {product}: {stock} at first, now {catalog.stock[product]} in stock"
                f" + {taken} reserved"
            )
    return found
