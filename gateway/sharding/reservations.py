"""The catalog's side of sharded mode's place-order saga: inventory reservations.

A reservation takes an order's units in the catalog before the order exists in its shard,
keyed by the order's id. It is ``held`` until the order is known to exist (``committed``), and
gives its units back when the order was never created (``released``) or is cancelled
(``returned``). Each change of inventory appends its event to the catalog's outbox in the same
transaction: ``inventory.reserved``, ``inventory.released``, ``inventory.returned``.
These functions run inside a transaction the caller opened on the catalog.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any
from uuid import UUID

from gateway.errors import IdempotencyConflict
from gateway.postgres import outbox
from gateway.postgres.database import Connection
from gateway.postgres.outbox import Event
from gateway.postgres.queries import query
from gateway.write_path.models import PlaceOrderRequest
from gateway.write_path.orders import Row, check_products

RESERVATION_AGGREGATE = "reservation"
INVENTORY_RESERVED = "inventory.reserved"
INVENTORY_RETAKEN = "inventory.retaken"


class ReservationStatus(StrEnum):
    """Where a reservation stands."""

    HELD = "held"
    COMMITTED = "committed"
    RELEASED = "released"
    RETURNED = "returned"


class Settlement(StrEnum):
    """How a reservation is settled, each from the statuses it applies to."""

    COMMIT = "commit"
    RELEASE = "release"
    RETURN = "return"

    @property
    def sources(self) -> list[str]:
        """The statuses this settlement moves a reservation from."""
        if self is Settlement.RETURN:
            return [ReservationStatus.HELD, ReservationStatus.COMMITTED]
        return [ReservationStatus.HELD]

    @property
    def target(self) -> ReservationStatus:
        """The status it moves the reservation to."""
        return {
            Settlement.COMMIT: ReservationStatus.COMMITTED,
            Settlement.RELEASE: ReservationStatus.RELEASED,
            Settlement.RETURN: ReservationStatus.RETURNED,
        }[self]

    @property
    def restores_units(self) -> bool:
        """Whether the reservation's units go back to inventory."""
        return self is not Settlement.COMMIT

    @property
    def event_type(self) -> str | None:
        """The event it appends: none for a commit, which the order's own ``order.placed``
        in its shard already tells (so that it is one statement, on every order's path)."""
        return f"inventory.{self.target.value}" if self.restores_units else None


class KeySettledMeanwhile(Exception):
    """A concurrent attempt with the same key reserved and settled its reservation while this
    one waited: its order exists (or failed), so the request starts over."""


@dataclass(frozen=True)
class Reservation:
    """Units held for an order: its id, and the products' rows as they were when reserved
    (what the order is priced and described from). ``reused``: an open reservation of an
    earlier attempt with the same idempotency key, so no units were taken now."""

    order_id: UUID
    products: Mapping[UUID, Row]
    reused: bool


@dataclass(frozen=True)
class ReservationKey:
    """The idempotency key of the request reserving, with the request's fingerprint."""

    key: str
    fingerprint: str


async def reserve(
    connection: Connection,
    order_id: UUID,
    shard: str,
    request: PlaceOrderRequest,
    key: ReservationKey | None,
    seconds: float,
) -> Reservation:
    """Take the units of ``request`` for order ``order_id`` and hold them for ``seconds``.

    With ``key``, an open reservation left by an earlier attempt with the same key in the same
    shard (keys are kept per shard) is returned instead (``IdempotencyConflict`` if that
    attempt's request differs), so a retried request never reserves twice; it is looked for
    again once the products are locked, so that a concurrent duplicate that reserved first is
    joined rather than refused for want of the units it took. Raises what
    ``check_products`` raises when a product is missing, not for sale or short of units.
    """
    product_ids = [item.product_id for item in request.items]
    if key is not None:
        earlier = await _held_with_key(connection, shard, key, product_ids)
        if earlier is not None:
            return earlier
    quantities = [item.quantity for item in request.items]
    locked = await connection.fetch(query("lock_products_to_reserve"), product_ids)
    if key is not None:
        # A concurrent attempt with the key may have reserved while this one waited for the
        # products: its units are this request's (taking them again would find them gone).
        earlier = await _held_with_key(connection, shard, key, product_ids)
        if earlier is not None:
            return earlier
    products = {row["id"]: row for row in locked}
    check_products(request, products)
    reserved = await connection.fetchval(
        query("insert_reservation"),
        order_id,
        shard,
        request.customer_id,
        product_ids,
        quantities,
        key.key if key else None,
        key.fingerprint if key else None,
        seconds,
    )
    if reserved is None:
        # A concurrent attempt with the same key reserved first (and has committed): no lock
        # is waited for while holding the products (every path locks products first).
        assert key is not None
        earlier = await _held_with_key(connection, shard, key, product_ids)
        if earlier is None:
            raise KeySettledMeanwhile(key.key)
        return earlier
    lines = [
        {"product_id": str(pid), "quantity": quantity}
        for pid, quantity in zip(product_ids, quantities, strict=True)
    ]
    event = _event(order_id, INVENTORY_RESERVED, 1, shard, request.customer_id, lines)
    await outbox.append(connection, [event])
    return Reservation(order_id, products, reused=False)


async def settle(
    connection: Connection, order_id: UUID, settlement: Settlement, shard: str | None = None
) -> bool:
    """Apply ``settlement`` to the reservation of ``order_id``, giving its units back when it
    says so; False (and nothing written) when the reservation is in no status it applies to,
    or, with ``shard``, when it names another shard. A settlement that restores units must run
    in a transaction; a commit is one statement.

    The products are locked before the reservation's row, the order ``reserve`` takes too
    (it locks them before inserting a row), so that no two of them wait on each other.
    """
    if settlement.restores_units:
        product_ids = await connection.fetchval(query("reservation_products"), order_id)
        if product_ids is None:
            return False
        await connection.execute(query("lock_products_in_order"), product_ids)
    row = await connection.fetchrow(
        query("settle_reservation"),
        order_id,
        settlement.sources,
        settlement.target.value,
        settlement.event_type is not None,
        shard,
    )
    if row is None:
        return False
    if settlement.restores_units:
        await connection.execute(query("restore_units"), row["product_ids"], row["quantities"])
    if settlement.event_type is None:
        return True
    lines = [
        {"product_id": str(pid), "quantity": quantity}
        for pid, quantity in zip(row["product_ids"], row["quantities"], strict=True)
    ]
    event = _event(
        order_id, settlement.event_type, row["version"], row["shard"], row["customer_id"], lines
    )
    await outbox.append(connection, [event])
    return True


async def retake(connection: Connection, order_id: UUID) -> bool:
    """Take again from inventory the units of order ``order_id``'s released or returned
    reservation, which becomes committed (``inventory.retaken``); False (nothing written) when
    the reservation is in another status or a product no longer has the units. Runs in a
    transaction; locks the products before the reservation's row, as ``settle`` does."""
    lines = await connection.fetchrow(query("reservation_lines"), order_id)
    if lines is None:
        return False
    locked = await connection.fetch(query("lock_products_to_reserve"), lines["product_ids"])
    stock = {row["id"]: row["inventory_quantity"] for row in locked}
    wanted = zip(lines["product_ids"], lines["quantities"], strict=True)
    if any(stock.get(product_id, 0) < quantity for product_id, quantity in wanted):
        return False
    row = await connection.fetchrow(query("retake_reservation"), order_id)
    if row is None:
        return False
    await connection.execute(query("take_units"), row["product_ids"], row["quantities"])
    items = [
        {"product_id": str(pid), "quantity": quantity}
        for pid, quantity in zip(row["product_ids"], row["quantities"], strict=True)
    ]
    event = _event(
        order_id, INVENTORY_RETAKEN, row["version"], row["shard"], row["customer_id"], items
    )
    await outbox.append(connection, [event])
    return True


async def status_of(connection: Connection, order_id: UUID) -> ReservationStatus | None:
    """The status of order ``order_id``'s reservation (``None``: it has none)."""
    status = await connection.fetchval(query("reservation_status"), order_id)
    return ReservationStatus(status) if status is not None else None


async def expired(connection: Connection, shard: str, limit: int) -> list[UUID]:
    """The order ids of up to ``limit`` held reservations of ``shard`` past their expiry,
    oldest first."""
    rows = await connection.fetch(query("expired_reservations"), shard, limit)
    return [row["order_id"] for row in rows]


async def shards_with_expired(connection: Connection) -> set[str]:
    """The shards that have held reservations past their expiry."""
    return {
        row["shard"] for row in await connection.fetch(query("shards_with_expired_reservations"))
    }


async def _held_with_key(
    connection: Connection, shard: str, key: ReservationKey, product_ids: Sequence[UUID]
) -> Reservation | None:
    row = await connection.fetchrow(query("held_reservation_by_key"), shard, key.key)
    if row is None:
        return None
    if row["request_hash"] != key.fingerprint:
        raise IdempotencyConflict(key.key)
    products = {
        product["id"]: product
        for product in await connection.fetch(query("products_by_id"), list(product_ids))
    }
    return Reservation(row["order_id"], products, reused=True)


def _event(
    order_id: UUID,
    event_type: str,
    version: int,
    shard: str,
    customer_id: UUID,
    lines: list[dict[str, Any]],
) -> Event:
    return Event(
        aggregate_type=RESERVATION_AGGREGATE,
        aggregate_id=str(order_id),
        event_type=event_type,
        version=version,
        payload={
            "order_id": str(order_id),
            "shard": shard,
            "customer_id": str(customer_id),
            "items": lines,
        },
    )
