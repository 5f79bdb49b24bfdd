"""The place-order saga's steps, over the saga's storage: reserve the units in the catalog,
create the order in the customer's shard (with the decision ``created``), commit the
reservation; when the order certainly was not created, record ``abandoned`` and release the
units at once. The sharded gateway runs these steps, and so does the simulation."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from uuid import UUID

from gateway.order_ids import new_order_id, shard_tag
from gateway.relay.errors import DATABASE_ERRORS
from gateway.sharding.decisions import Decision
from gateway.sharding.reservations import (
    Reservation,
    ReservationKey,
    ReservationStatus,
    Settlement,
)
from gateway.sharding.saga import release_at_once, released_after_abandoning
from gateway.sharding.saga_storage import CatalogStorage, ShardRecords
from gateway.write_path.idempotency import KeyClaim
from gateway.write_path.models import Order, PlaceOrderRequest
from gateway.write_path.placement import PlacedOrder

log = logging.getLogger("gateway.sharding")


class SagaSteps:
    """The saga's steps for one writer. A subclass sets ``_saga_catalog`` and
    ``_reservation_seconds``, and may wrap any step."""

    _saga_catalog: CatalogStorage
    _reservation_seconds: float

    async def _reserve(
        self, shard: str, request: PlaceOrderRequest, claim: KeyClaim | None
    ) -> Reservation:
        """Saga step 1: take the units in the catalog."""
        order_id = new_order_id(shard_tag(shard))
        key = ReservationKey(claim.key, claim.fingerprint) if claim else None
        return await self._saga_catalog.reserve(
            order_id, shard, request, key, self._reservation_seconds
        )

    async def _complete(
        self,
        shard: ShardRecords,
        reservation: Reservation,
        create: Callable[[], Awaitable[PlacedOrder]],
    ) -> PlacedOrder:
        """Saga steps 2 and 3: ``create`` the order in ``shard``, then commit its units; give
        up on the reservation when the order certainly was not created."""
        try:
            placed = await create()
        except BaseException as error:
            if release_at_once(error) and not reservation.reused:
                await self._abandon(shard, reservation.order_id)
            raise
        if placed.replayed and placed.order.id != reservation.order_id:
            # Another request with this key created its order meanwhile: ours is not needed.
            await self._abandon(shard, reservation.order_id)
            return placed
        if not await self._settle(reservation.order_id, Settlement.COMMIT):
            await self._confirm_committed(placed.order)
        return placed

    async def _abandon(self, shard: ShardRecords, order_id: UUID) -> None:
        """Give up on order ``order_id`` before it exists: record ``abandoned`` in its shard,
        then release its units, unless a concurrent attempt created the order first. When the
        shard does not answer, the reservation is left to the sweeper."""
        try:
            decided = await shard.decide(order_id, Decision.ABANDONED)
        except DATABASE_ERRORS as error:
            log.warning("order %s: reservation left to the sweeper: %s", order_id, error)
            return
        if released_after_abandoning(decided):
            await self._settle(order_id, Settlement.RELEASE)

    async def _settle(self, order_id: UUID, settlement: Settlement) -> bool:
        return await self._saga_catalog.settle(order_id, settlement)

    async def _confirm_committed(self, order: Order) -> None:
        """Saga step 3 found the reservation not held: committed by a concurrent attempt or
        the sweeper, or returned because the order was cancelled meanwhile, both fine. Any
        other status breaks the decision the order was created with; ``fanout shards
        reconcile`` repairs such a break, and it is logged."""
        status = await self._saga_catalog.status_of(order.id)
        if status in (ReservationStatus.COMMITTED, ReservationStatus.RETURNED):
            return
        log.error("order %s was created but its reservation is %s", order.id, status)
