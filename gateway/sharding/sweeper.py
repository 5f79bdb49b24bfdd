"""The saga's sweeper, run by the relay (one at a time across relays): it settles what the
writing process could not.

- Units an order's cancellation queued for return in its shard (``inventory_returns``, written
  by the shard's trigger in the cancelling transaction) go back to the catalog's inventory.
- Held reservations past their expiry are settled by the decision that stands in the order's
  shard: the sweeper records ``abandoned`` unless the creating transaction recorded
  ``created`` first (see ``decisions``), then releases the units, or commits them to the order
  (returns them when the order was cancelled).

Every step is idempotent (a reservation settles once), so a sweep that dies half-way is
finished by the next one. Each shard is settled on its own, every call to it bounded by the
sweep's timeout: a shard that does not answer is skipped until the next sweep, and never holds
up the others.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

import asyncpg

from gateway.postgres.advisory_locks import AdvisoryLock
from gateway.postgres.database import Connection
from gateway.postgres.queries import query
from gateway.relay.errors import DATABASE_ERRORS
from gateway.sharding import decisions, reservations
from gateway.sharding.decisions import Decision
from gateway.sharding.reservations import Settlement
from gateway.sharding.saga import settlement_of_expired
from gateway.write_path.order_status import OrderStatus

log = logging.getLogger("gateway.sharding")

SWEEP_CHUNK = 200
DEFAULT_TIMEOUT_SECONDS = 5.0


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
    catalog: asyncpg.Pool,
    shards: Mapping[str, asyncpg.Pool],
    limit: int = SWEEP_CHUNK,
    timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS,
) -> SweepResult:
    """One sweep (nothing when another process is sweeping). Each call to a shard waits at
    most ``timeout_seconds``; the shards are asked whether they answer all at once, before
    the sweep takes its lock."""
    result = SweepResult()
    answering = await _answering(shards, timeout_seconds, result)
    async with catalog.acquire() as guard, guard.transaction():
        if not await guard.fetchval(query("try_advisory_xact_lock"), AdvisoryLock.SAGA_SWEEP):
            return result
        for name, pool in answering.items():
            try:
                async with bounded_connection(pool, timeout_seconds) as shard:
                    await return_queued_units(catalog, shard, limit, result, timeout_seconds)
                    await settle_expired(catalog, name, shard, limit, result, timeout_seconds)
            except DATABASE_ERRORS as error:
                log.warning("shard %s: reservations left for the next sweep: %s", name, error)
                result.unreachable.add(name)
        async with catalog.acquire() as connection:
            named = await reservations.shards_with_expired(connection)
        for name in sorted(named - set(shards)):
            log.warning("reservations name shard %r, which this sweep cannot reach", name)
            result.unreachable.add(name)
    return result


@asynccontextmanager
async def bounded_connection(pool: asyncpg.Pool, timeout_seconds: float) -> AsyncIterator[Any]:
    """A connection of ``pool`` taken within ``timeout_seconds``. When the work fails (a call
    past its timeout among others), the connection is closed at once rather than reset: a
    server that stopped answering would hold the reset for the pool's command timeout."""
    connection = await pool.acquire(timeout=timeout_seconds)
    try:
        yield connection
    except BaseException:
        connection.terminate()
        raise
    finally:
        await pool.release(connection, timeout=timeout_seconds)


async def _answering(
    shards: Mapping[str, asyncpg.Pool], timeout_seconds: float, result: SweepResult
) -> dict[str, asyncpg.Pool]:
    """The shards that answer within ``timeout_seconds`` (asked at once); the others are
    added to ``result.unreachable``."""

    async def answers(pool: asyncpg.Pool) -> None:
        async with pool.acquire(timeout=timeout_seconds) as connection:
            await connection.fetchval("SELECT 1", timeout=timeout_seconds)

    names = list(shards)
    outcomes = await asyncio.gather(
        *(asyncio.wait_for(answers(shards[name]), timeout_seconds) for name in names),
        return_exceptions=True,
    )
    answering: dict[str, asyncpg.Pool] = {}
    for name, outcome in zip(names, outcomes, strict=True):
        if isinstance(outcome, BaseException):
            if not isinstance(outcome, DATABASE_ERRORS):
                raise outcome
            log.warning("shard %s does not answer; skipped by this sweep: %s", name, outcome)
            result.unreachable.add(name)
        else:
            answering[name] = shards[name]
    return answering


async def return_queued_units(
    catalog: asyncpg.Pool,
    shard: Connection,
    limit: int,
    result: SweepResult,
    timeout_seconds: float | None = None,
) -> None:
    """Give back to the catalog the units of the shard's cancelled orders, then forget them."""
    while True:
        rows = await shard.fetch(query("queued_inventory_returns"), limit, timeout=timeout_seconds)
        queued = [row["order_id"] for row in rows]
        if not queued:
            return
        result.settled[Settlement.RETURN] += await return_units(
            catalog, shard, queued, timeout_seconds
        )
        if len(queued) < limit:
            return


async def return_units(
    catalog: asyncpg.Pool,
    shard: asyncpg.Pool | Connection,
    order_ids: list[UUID],
    timeout_seconds: float | None = None,
) -> int:
    """Give back the units of the cancelled orders ``order_ids`` (queued in ``shard``), then
    forget them there; how many reservations this returned (one already returned counts
    none)."""
    returned = 0
    for order_id in order_ids:
        returned += await settle_one(catalog, order_id, Settlement.RETURN)
    await shard.execute(query("forget_inventory_returns"), order_ids, timeout=timeout_seconds)
    return returned


async def settle_expired(
    catalog: asyncpg.Pool,
    name: str,
    shard: Connection,
    limit: int,
    result: SweepResult,
    timeout_seconds: float | None = None,
) -> None:
    """Settle up to ``limit`` held reservations of shard ``name`` past their expiry, by the
    decision that stands in the shard (recording ``abandoned`` where none was taken)."""
    async with catalog.acquire() as connection:
        due = await reservations.expired(connection, name, limit)
    if not due:
        return
    decided: dict[UUID, Decision] = {}
    # A creating transaction that holds a decision's row is waited for at most half the
    # timeout (the server then answers), so that only a shard that stopped answering exceeds
    # the timeout and ends this shard's sweep.
    lock_wait = f"{int((timeout_seconds or DEFAULT_TIMEOUT_SECONDS) * 500)}ms"
    for order_id in due:
        try:
            async with shard.transaction():
                await shard.execute(query("set_lock_timeout"), lock_wait, timeout=timeout_seconds)
                decided[order_id] = await decisions.decide(
                    shard, order_id, Decision.ABANDONED, timeout_seconds
                )
        except asyncpg.LockNotAvailableError:
            log.warning("shard %s: order %s is still being decided", name, order_id)
    created = [order_id for order_id, taken in decided.items() if taken is Decision.CREATED]
    rows = await shard.fetch(query("existing_orders"), created, timeout=timeout_seconds)
    statuses = {row["id"]: OrderStatus(row["status"]) for row in rows}
    for order_id, decision in decided.items():
        status = statuses.get(order_id)
        if decision is Decision.CREATED and status is None:
            log.warning(
                "shard %s: order %s was created and is gone; units returned", name, order_id
            )
        settlement = settlement_of_expired(decision, status)
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
