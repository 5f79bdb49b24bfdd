"""The saga's sweeper, run by the relay (one at a time across relays): it settles what the
writing process could not.

- Units an order's cancellation queued for return in its shard (``inventory_returns``, written
  by the shard's trigger in the cancelling transaction) go back to the catalog's inventory.
- Held reservations past their expiry are settled by the decision that stands in the order's
  shard: the sweeper records ``abandoned`` unless the creating transaction recorded
  ``created`` first (see ``decisions``), then releases the units, or commits them to the order
  (returns them when the order was cancelled). An order that moved away from the swept shard
  (``fanout shards move``) is left held, for the sweep of the shard it moved to once the
  catalog names that shard; and a settlement changes nothing once the catalog's reservation
  names another shard than the one swept, so that a sweep that listed a reservation before a
  move's catalog step never settles it by what the old shard still tells.

Every step is idempotent (a reservation settles once), so a sweep that dies half-way is
finished by the next one. Each shard is settled on its own, every call to it bounded by the
sweep's timeout: a shard that does not answer is skipped until the next sweep, and never holds
up the others.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from uuid import UUID

import asyncpg

from gateway.relay.errors import DATABASE_ERRORS
from gateway.sharding.decisions import Decision
from gateway.sharding.postgres_saga_storage import PostgresCatalog, PostgresShardRecords
from gateway.sharding.reservations import Settlement
from gateway.sharding.saga import settlement_of_expired
from gateway.sharding.saga_storage import CatalogStorage, DecisionBusy, ShardRecords
from gateway.write_path.order_status import OrderStatus

log = logging.getLogger("gateway.sharding")

SWEEP_CHUNK = 200
DEFAULT_TIMEOUT_SECONDS = 5.0


@dataclass
class SweepResult:
    """What one sweep settled, by settlement, and the shards it could not reach."""

    settled: dict[Settlement, int] = field(default_factory=lambda: dict.fromkeys(Settlement, 0))
    unreachable: set[str] = field(default_factory=set)
    swept: bool = False
    """Whether this sweep ran (False: another process was sweeping)."""

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
    """One sweep over the PostgreSQL databases (see :func:`sweep_storages`)."""
    return await sweep_storages(
        PostgresCatalog(catalog),
        {name: PostgresShardRecords(pool) for name, pool in shards.items()},
        limit,
        timeout_seconds,
    )


async def sweep_storages(
    catalog: CatalogStorage,
    shards: Mapping[str, ShardRecords],
    limit: int = SWEEP_CHUNK,
    timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS,
) -> SweepResult:
    """One sweep (nothing when another process is sweeping). Each call to a shard waits at
    most ``timeout_seconds``; the shards are asked whether they answer all at once, before
    the sweep takes its lock."""
    result = SweepResult()
    answering = await _answering(shards, timeout_seconds, result)
    async with catalog.sweeping() as sweeping:
        if not sweeping:
            return result
        result.swept = True
        for name, records in answering.items():
            try:
                async with records.session(timeout_seconds) as shard:
                    await return_queued_units(catalog, shard, limit, result)
                    await settle_expired(catalog, name, shard, limit, result, timeout_seconds)
            except DATABASE_ERRORS as error:
                log.warning("shard %s: reservations left for the next sweep: %s", name, error)
                result.unreachable.add(name)
        named = await catalog.shards_with_expired()
        for name in sorted(named - set(shards)):
            log.warning("reservations name shard %r, which this sweep cannot reach", name)
            result.unreachable.add(name)
    return result


async def _answering(
    shards: Mapping[str, ShardRecords], timeout_seconds: float, result: SweepResult
) -> dict[str, ShardRecords]:
    """The shards that answer within ``timeout_seconds`` (asked at once); the others are
    added to ``result.unreachable``."""
    names = list(shards)
    outcomes = await asyncio.gather(
        *(
            asyncio.wait_for(shards[name].answers(timeout_seconds), timeout_seconds)
            for name in names
        ),
        return_exceptions=True,
    )
    answering: dict[str, ShardRecords] = {}
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
    catalog: CatalogStorage, shard: ShardRecords, limit: int, result: SweepResult
) -> None:
    """Give back to the catalog the units of the shard's cancelled orders, then forget them."""
    while True:
        queued = await shard.queued_returns(limit)
        if not queued:
            return
        result.settled[Settlement.RETURN] += await return_units(catalog, shard, queued)
        if len(queued) < limit:
            return


async def return_units(catalog: CatalogStorage, shard: ShardRecords, order_ids: list[UUID]) -> int:
    """Give back the units of the cancelled orders ``order_ids`` (queued in ``shard``), then
    forget them there; how many reservations this returned (one already returned counts
    none)."""
    returned = 0
    for order_id in order_ids:
        returned += await catalog.settle(order_id, Settlement.RETURN)
    await shard.forget_returns(order_ids)
    return returned


async def settle_expired(
    catalog: CatalogStorage,
    name: str,
    shard: ShardRecords,
    limit: int,
    result: SweepResult,
    timeout_seconds: float | None = None,
) -> None:
    """Settle up to ``limit`` held reservations of shard ``name`` past their expiry, by the
    decision that stands in the shard (recording ``abandoned`` where none was taken)."""
    due = await catalog.expired(name, limit)
    if not due:
        return
    decided: dict[UUID, Decision] = {}
    # A creating transaction that holds a decision's row is waited for at most half the
    # timeout (the server then answers), so that only a shard that stopped answering exceeds
    # the timeout and ends this shard's sweep.
    lock_wait = (timeout_seconds or DEFAULT_TIMEOUT_SECONDS) / 2
    for order_id in due:
        try:
            decided[order_id] = await shard.decide(order_id, Decision.ABANDONED, lock_wait)
        except DecisionBusy:
            log.warning("shard %s: order %s is still being decided", name, order_id)
    statuses = await shard.order_statuses(list(decided))
    absent = absent_orders(decided, statuses)
    moved = await shard.moved_away(absent) if absent else {}
    for order_id, decision in decided.items():
        status = statuses.get(order_id)
        settlement = settlement_of_expired(decision, status, moved.get(order_id))
        if settlement is None:
            # It moved away: its move's catalog step has not named the new shard yet (or the
            # move was interrupted before it), or did after this sweep listed it. Settled
            # there, by the decision that moved with it, once the catalog names that shard.
            where = moved.get(order_id, "another shard")
            log.info("shard %s: order %s moved to %s; left held", name, order_id, where)
            continue
        if decision is Decision.CREATED and status is None:
            log.warning(
                "shard %s: order %s was created and is gone; units returned", name, order_id
            )
        # Only while the reservation still names this shard: a move's catalog step may have
        # named another since it was listed, whose sweep settles it by that shard's decision.
        if await catalog.settle(order_id, settlement, name):
            result.settled[settlement] += 1


def absent_orders(
    decided: Mapping[UUID, Decision], statuses: Mapping[UUID, OrderStatus]
) -> list[UUID]:
    """The orders decided on in the swept shard that are not there, whatever the decision:
    the ones whose tombstones the sweeper reads. A decision outlives its order's move on the
    source until the move's last step deletes it, and an ``abandoned`` recorded there after
    that step (before shards answered ``moved`` for such an order) says nothing of the order,
    which lives on elsewhere."""
    return [order_id for order_id in decided if order_id not in statuses]
