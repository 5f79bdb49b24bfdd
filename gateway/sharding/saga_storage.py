"""What the place-order saga needs of its two databases, in its own terms.

The catalog keeps the reservations and the inventory; a shard keeps its customers' orders, the
decision taken about each reservation, and the returns its cancellations queued. The saga's
steps, the sweeper and the reconciliation run over these interfaces; the PostgreSQL storage
(``postgres_saga_storage``) is the product's, and an in-memory one lets the simulation drive
the same code. Each operation is one transaction unless it says otherwise.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Protocol
from uuid import UUID

from gateway.sharding.decisions import Decision
from gateway.sharding.reservations import (
    Reservation,
    ReservationKey,
    ReservationStatus,
    Settlement,
)
from gateway.write_path.idempotency import KeyClaim
from gateway.write_path.models import PlaceOrderRequest
from gateway.write_path.order_status import OrderStatus
from gateway.write_path.orders import Row
from gateway.write_path.placement import PlacedOrder


class DecisionBusy(Exception):
    """Another transaction is recording the decision of this reservation and did not finish
    within the wait allowed."""


class CatalogStorage(Protocol):
    """The catalog's reservations and inventory."""

    async def reserve(
        self,
        order_id: UUID,
        shard: str,
        request: PlaceOrderRequest,
        key: ReservationKey | None,
        seconds: float,
    ) -> Reservation:
        """Take the request's units for ``order_id``, held for ``seconds``; with ``key``, the
        held reservation of an earlier attempt with that key in ``shard`` instead (see
        ``reservations.reserve`` for the errors)."""
        ...

    async def settle(
        self, order_id: UUID, settlement: Settlement, shard: str | None = None
    ) -> bool:
        """Apply ``settlement``; False (nothing changed) when the reservation is in none of
        its source statuses, or, with ``shard``, names another shard (a move named the
        order's new shard since the caller looked)."""
        ...

    async def retake(self, order_id: UUID) -> bool:
        """Commit again a released or returned reservation when the stock has its units."""
        ...

    async def status_of(self, order_id: UUID) -> ReservationStatus | None:
        """The reservation's status (``None``: there is none)."""
        ...

    async def statuses_of(self, order_ids: Sequence[UUID]) -> dict[UUID, ReservationStatus]:
        """The statuses of the reservations of ``order_ids`` that exist."""
        ...

    async def expired(self, shard: str, limit: int) -> list[UUID]:
        """Up to ``limit`` held reservations of ``shard`` past their expiry, oldest first."""
        ...

    async def shards_with_expired(self) -> set[str]:
        """The shards with held reservations past their expiry."""
        ...

    async def committed_page(self, after: UUID | None, limit: int) -> list[tuple[UUID, str]]:
        """Up to ``limit`` committed reservations (order id, shard) after ``after``, by id."""
        ...

    def sweeping(self) -> AbstractAsyncContextManager[bool]:
        """While inside: whether this process holds the sweep (no other sweeps meanwhile)."""
        ...


class ShardRecords(Protocol):
    """What a shard tells about its orders and keeps for the saga."""

    async def answers(self, timeout_seconds: float) -> None:
        """Return when the shard answers; a database error when it does not."""
        ...

    def session(self, timeout_seconds: float) -> AbstractAsyncContextManager[ShardRecords]:
        """The shard over one connection taken within ``timeout_seconds``, every call bounded
        by it; dropped at once when the work inside fails."""
        ...

    async def decide(
        self, order_id: UUID, wanted: Decision, lock_wait_seconds: float | None = None
    ) -> Decision:
        """Record ``wanted`` unless a decision stands; the decision that stands, or
        ``Decision.MOVED`` (nothing recorded) when this shard holds the order's tombstone and
        not the order. With ``lock_wait_seconds``, ``DecisionBusy`` when a transaction
        recording one holds it longer."""
        ...

    async def order_statuses(self, order_ids: Sequence[UUID]) -> dict[UUID, OrderStatus]:
        """The statuses of the orders of ``order_ids`` that exist."""
        ...

    async def moved_away(self, order_ids: Sequence[UUID]) -> dict[UUID, str]:
        """The shard each order of ``order_ids`` that moved away from this one went to (its
        tombstone, left by ``fanout shards move``)."""
        ...

    async def live_orders_page(
        self, after: UUID | None, limit: int
    ) -> list[tuple[UUID, OrderStatus]]:
        """Up to ``limit`` orders that are not cancelled, after ``after``, by id."""
        ...

    def locked_order(
        self, order_id: UUID
    ) -> AbstractAsyncContextManager[tuple[OrderStatus | None, int]]:
        """While inside: the order's status and version (``None`` and 0: none), with no change
        to it let in."""
        ...

    async def queued_returns(self, limit: int) -> list[UUID]:
        """Up to ``limit`` cancelled orders whose units are queued for return, oldest first."""
        ...

    async def forget_returns(self, order_ids: Sequence[UUID]) -> None:
        """Forget the queued returns of ``order_ids``."""
        ...


class ShardStorage(ShardRecords, Protocol):
    """A shard as the writers use it: its records, and creating and cancelling orders."""

    async def create_order(
        self,
        order_id: UUID,
        request: PlaceOrderRequest,
        claim: KeyClaim | None,
        products: Mapping[UUID, Row],
    ) -> PlacedOrder:
        """In one transaction: the order (or, when an earlier request holds ``claim``'s key,
        that request's order, replayed) with the decision ``created``; ``ReservationLapsed``
        (nothing written) when ``abandoned`` stands."""
        ...

    async def cancel_order(self, order_id: UUID, expected_version: int | None = None) -> bool:
        """Cancel the order, queueing its units' return in the same transaction; False when
        it cannot be (gone, in a final status, or changed since ``expected_version``)."""
        ...
