"""Reconciliation of the saga's two halves: every live order (in its shard) has its units
committed to it (in the catalog), and every committed reservation has a live order.

The saga keeps this true by itself (see ``decisions``); a reconciliation finds and repairs
what an operator's hand, a restored backup or a defect broke:

- a live order whose reservation was released or returned: its units are taken again when
  the stock has them; otherwise the order is cancelled while it is still pending, and reported
  when it is not (it was sold without units: an operator decides);
- a committed reservation whose order was cancelled or is gone: its units are returned.

Held reservations belong to the sweeper and are left alone. A shard that does not answer is
named in the result, never silently left out.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any
from uuid import UUID

from gateway.relay.errors import DATABASE_ERRORS
from gateway.sharding.reservations import ReservationStatus, Settlement
from gateway.sharding.saga_storage import CatalogStorage, ShardStorage
from gateway.write_path.order_status import RESTOCKING_STATUSES, OrderStatus

log = logging.getLogger("gateway.sharding")

MAX_MOVE_HOPS = 8
"""Tombstones a reconciliation follows from one order before giving it up as unknown."""

PAGE = 500


class Repair(StrEnum):
    """What the reconciliation does about one break."""

    RETAKE = "retake"
    """Take the order's units from inventory again; the reservation is committed."""
    CANCEL = "cancel"
    """Cancel the order: the stock no longer has its units."""
    RETURN = "return"
    """Give the reservation's units back: its order is cancelled or gone."""


def repair_of(
    reservation: ReservationStatus | None, order: OrderStatus | None, units_in_stock: bool
) -> Repair | None:
    """What repairs a reservation in status ``reservation`` (``None``: there is none) whose
    order has status ``order`` (``None``: there is none); ``None`` when nothing is broken or
    nothing can be done without an operator."""
    live = order is not None and order not in RESTOCKING_STATUSES
    if reservation is ReservationStatus.COMMITTED:
        return None if live else Repair.RETURN
    if reservation is ReservationStatus.HELD or not live or reservation is None:
        # Held: the sweeper's. No reservation at all: nothing tells which units to take.
        return None
    if units_in_stock:
        return Repair.RETAKE
    return Repair.CANCEL if order is OrderStatus.PENDING else None


def is_break(reservation: ReservationStatus | None, order: OrderStatus | None) -> bool:
    """Whether a reservation and its order disagree: a live order without committed units, or
    committed units without a live order."""
    live = order is not None and order not in RESTOCKING_STATUSES
    if reservation is ReservationStatus.HELD:
        return False
    return live != (reservation is ReservationStatus.COMMITTED)


@dataclass(frozen=True)
class Break:
    """A reservation and its order that disagree, and what was (or would be) done."""

    order_id: UUID
    shard: str
    reservation: ReservationStatus | None
    order: OrderStatus | None
    repair: Repair | None
    repaired: bool

    def as_json(self) -> dict[str, Any]:
        """The break as JSON-ready values."""
        return {
            "order_id": str(self.order_id),
            "shard": self.shard,
            "reservation": self.reservation.value if self.reservation else None,
            "order": self.order.value if self.order else None,
            "repair": self.repair.value if self.repair else None,
            "repaired": self.repaired,
        }


def after_return(found: Break, returned: bool) -> Break | None:
    """The break ``found`` once its units were asked back: repaired when the return moved
    them; ``None`` when it found the reservation no longer committed, since a cancellation
    returned its units meanwhile (the saga's own path: nothing was broken)."""
    return replace(found, repaired=True) if returned else None


@dataclass
class Reconciliation:
    """What one reconciliation found, and the shards it could not check."""

    breaks: list[Break] = field(default_factory=list)
    missing: dict[str, str] = field(default_factory=dict)
    orders_checked: int = 0
    reservations_checked: int = 0

    @property
    def unrepaired(self) -> list[Break]:
        """The breaks still there."""
        return [found for found in self.breaks if not found.repaired]

    def as_json(self) -> dict[str, Any]:
        """The result as JSON-ready values."""
        return {
            "orders_checked": self.orders_checked,
            "reservations_checked": self.reservations_checked,
            "breaks": [found.as_json() for found in self.breaks],
            "missing": dict(self.missing),
        }


async def reconcile(
    catalog: CatalogStorage, shards: Mapping[str, ShardStorage], *, repair: bool = True
) -> Reconciliation:
    """Check every shard's live orders against the catalog's reservations and every committed
    reservation against its shard; repair what breaks (unless ``repair`` is false)."""
    result = Reconciliation()
    for name, shard in shards.items():
        try:
            await _check_live_orders(catalog, name, shard, repair, result)
        except DATABASE_ERRORS as error:
            log.warning("shard %s: its orders were not reconciled: %s", name, error)
            result.missing[name] = f"{type(error).__name__}: {error}".rstrip(": ")
    await _check_committed(catalog, shards, repair, result)
    return result


async def _check_live_orders(
    catalog: CatalogStorage, name: str, shard: ShardStorage, repair: bool, result: Reconciliation
) -> None:
    after: UUID | None = None
    while page := await shard.live_orders_page(after, PAGE):
        after = page[-1][0]
        result.orders_checked += len(page)
        orders = dict(page)
        statuses = await catalog.statuses_of(list(orders))
        for order_id, order in orders.items():
            reservation = statuses.get(order_id)
            if not is_break(reservation, order):
                continue
            if not repair:
                chosen = repair_of(reservation, order, units_in_stock=True)
                result.breaks.append(Break(order_id, name, reservation, order, chosen, False))
                continue
            found = await _repair_live_order(catalog, name, shard, order_id)
            if found is not None:
                result.breaks.append(found)


async def _repair_live_order(
    catalog: CatalogStorage, name: str, shard: ShardStorage, order_id: UUID
) -> Break | None:
    """Retake the units of a live order, holding its row so that no cancellation slips in;
    cancel it when the stock has them no more and it is still pending. ``None`` when, looked at
    again under the lock, nothing is broken."""
    async with shard.locked_order(order_id) as (order, version):
        reservation = await catalog.status_of(order_id)
        if not is_break(reservation, order):
            return None
        chosen = repair_of(reservation, order, units_in_stock=True)
        if chosen is Repair.RETAKE and not await catalog.retake(order_id):
            chosen = repair_of(reservation, order, units_in_stock=False)
    repaired = chosen is not None
    if chosen is Repair.CANCEL:
        # Only the version looked at under the lock: a payment or a timeout that changed the
        # order since wins, and the break is left to the next run.
        repaired = await shard.cancel_order(order_id, version)
    log.warning(
        "order %s (shard %s): reservation %s, repair %s", order_id, name, reservation, chosen
    )
    return Break(order_id, name, reservation, order, chosen, repaired)


async def _check_committed(
    catalog: CatalogStorage,
    shards: Mapping[str, ShardStorage],
    repair: bool,
    result: Reconciliation,
) -> None:
    after: UUID | None = None
    while page := await catalog.committed_page(after, PAGE):
        after = page[-1][0]
        result.reservations_checked += len(page)
        by_shard: dict[str, list[UUID]] = {}
        for order_id, shard_name in page:
            by_shard.setdefault(shard_name, []).append(order_id)
        for name, order_ids in by_shard.items():
            if name in result.missing:
                continue
            shard = shards.get(name)
            if shard is None:
                result.missing[name] = "not configured"
                continue
            try:
                orders, unknown = await statuses_following_moves(shards, shard, order_ids)
            except DATABASE_ERRORS as error:
                result.missing[name] = f"{type(error).__name__}: {error}".rstrip(": ")
                continue
            for order_id in order_ids:
                if order_id in unknown:
                    continue
                order = orders.get(order_id)
                committed = ReservationStatus.COMMITTED
                if not is_break(committed, order):
                    continue
                chosen = repair_of(committed, order, units_in_stock=False)
                found = Break(order_id, name, committed, order, chosen, repaired=False)
                if not repair or chosen is not Repair.RETURN:
                    result.breaks.append(found)
                elif returned := after_return(
                    found, await catalog.settle(order_id, Settlement.RETURN)
                ):
                    result.breaks.append(returned)


async def statuses_following_moves(
    shards: Mapping[str, ShardStorage], shard: ShardStorage, order_ids: Sequence[UUID]
) -> tuple[dict[UUID, OrderStatus], set[UUID]]:
    """The statuses of ``order_ids`` as ``shard`` has them, an order moved away read where its
    tombstones lead (a move's catalog step may not have named the new shard yet); and the
    orders nobody can say anything of: whose tombstones lead to no configured shard or past
    ``MAX_MOVE_HOPS``, or to a shard that holds neither the order nor a tombstone of it (a
    move's copy not committed there yet, or cut off before it was: resuming the move writes
    it)."""
    statuses = await shard.order_statuses(order_ids)
    frontier = await _moved_by_destination(shard, [o for o in order_ids if o not in statuses])
    unknown: set[UUID] = set()
    for _ in range(MAX_MOVE_HOPS):
        following: dict[str, list[UUID]] = {}
        for name, ids in frontier.items():
            storage = shards.get(name)
            if storage is None:
                unknown.update(ids)
                continue
            found = await storage.order_statuses(ids)
            statuses.update(found)
            absent = [o for o in ids if o not in found]
            further = await _moved_by_destination(storage, absent)
            for destination, moved in further.items():
                following.setdefault(destination, []).extend(moved)
            leading_on = {o for moved in further.values() for o in moved}
            unknown.update(o for o in absent if o not in leading_on)
        frontier = following
    unknown.update(o for ids in frontier.values() for o in ids)
    return statuses, unknown


async def _moved_by_destination(
    shard: ShardStorage, order_ids: Sequence[UUID]
) -> dict[str, list[UUID]]:
    if not order_ids:
        return {}
    by_destination: dict[str, list[UUID]] = {}
    for order_id, destination in (await shard.moved_away(order_ids)).items():
        by_destination.setdefault(destination, []).append(order_id)
    return by_destination
