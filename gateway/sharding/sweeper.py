"""The saga's sweeper, run by the relay (one at a time across relays): it settles what the
writing process could not.

- Units an order's cancellation queued for return in its shard (``inventory_returns``, written
  by the shard's trigger in the cancelling transaction) go back to the catalog's inventory.
- Held reservations past their expiry are committed when their order exists in its shard, and
  released when it does not.

Every step is idempotent (a reservation settles once), so a sweep that dies half-way is
finished by the next one. A shard that does not answer is skipped until the next sweep.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from uuid import UUID

import asyncpg

from gateway.postgres.advisory_locks import AdvisoryLock
from gateway.postgres.queries import query
from gateway.relay.errors import DATABASE_ERRORS
from gateway.sharding import reservations
from gateway.sharding.reservations import Settlement
from gateway.sharding.saga import settlement_of_expired
from gateway.write_path.order_status import OrderStatus

log = logging.getLogger("gateway.sharding")

SWEEP_CHUNK = 200


@dataclass
class SweepResult:
    """What one sweep settled, by settlement, and the shards it could not reach."""

    settled: dict[Settlement, int] = field(default_factory=lambda: dict.fromkeys(Settlement, 0))
    unreachable: set[str] = field(default_factory=set)

    @property
    def total(self) -> int:
        """Reservations settled."""
        return sum(self.settled.values())


async def sweep(
    catalog: asyncpg.Pool, shards: Mapping[str, asyncpg.Pool], limit: int = SWEEP_CHUNK
) -> SweepResult:
    """One sweep (nothing when another process is sweeping)."""
    result = SweepResult()
    async with catalog.acquire() as guard, guard.transaction():
        if not await guard.fetchval(query("try_advisory_xact_lock"), AdvisoryLock.SAGA_SWEEP):
            return result
        for name, pool in shards.items():
            try:
                await return_queued_units(catalog, pool, limit, result)
            except DATABASE_ERRORS as error:
                log.warning("shard %s: cannot collect returned units: %s", name, error)
                result.unreachable.add(name)
        await settle_expired(catalog, shards, limit, result)
    return result


async def return_queued_units(
    catalog: asyncpg.Pool, shard: asyncpg.Pool, limit: int, result: SweepResult
) -> None:
    """Give back to the catalog the units of the shard's cancelled orders, then forget them."""
    while True:
        queued = [
            row["order_id"] for row in await shard.fetch(query("queued_inventory_returns"), limit)
        ]
        if not queued:
            return
        result.settled[Settlement.RETURN] += await return_units(catalog, shard, queued)
        if len(queued) < limit:
            return


async def return_units(catalog: asyncpg.Pool, shard: asyncpg.Pool, order_ids: list[UUID]) -> int:
    """Give back the units of the cancelled orders ``order_ids`` (queued in ``shard``), then
    forget them there; how many reservations this returned (one already returned counts
    none)."""
    returned = 0
    for order_id in order_ids:
        returned += await settle_one(catalog, order_id, Settlement.RETURN)
    await shard.execute(query("forget_inventory_returns"), order_ids)
    return returned


async def settle_expired(
    catalog: asyncpg.Pool, shards: Mapping[str, asyncpg.Pool], limit: int, result: SweepResult
) -> None:
    """Commit or release every held reservation past its expiry, asking each order's shard
    whether the order exists."""
    async with catalog.acquire() as connection:
        due = await reservations.expired(connection, limit)
    by_shard: dict[str, list[UUID]] = {}
    for order_id, shard in due:
        by_shard.setdefault(shard, []).append(order_id)
    for name, order_ids in by_shard.items():
        pool = shards.get(name)
        if pool is None:
            log.warning("reservations name shard %r, which is not configured", name)
            result.unreachable.add(name)
            continue
        try:
            rows = await pool.fetch(query("existing_orders"), order_ids)
        except DATABASE_ERRORS as error:
            log.warning("shard %s: cannot settle expired reservations: %s", name, error)
            result.unreachable.add(name)
            continue
        statuses = {row["id"]: OrderStatus(row["status"]) for row in rows}
        for order_id in order_ids:
            settlement = settlement_of_expired(statuses.get(order_id))
            if await settle_one(catalog, order_id, settlement):
                result.settled[settlement] += 1


async def settle_one(catalog: asyncpg.Pool, order_id: UUID, settlement: Settlement) -> bool:
    """Apply ``settlement`` to one reservation (in a transaction of its own when it gives
    units back; a commit is one statement)."""
    async with catalog.acquire() as connection:
        if not settlement.restores_units:
            return await reservations.settle(connection, order_id, settlement)
        async with connection.transaction():
            return await reservations.settle(connection, order_id, settlement)
