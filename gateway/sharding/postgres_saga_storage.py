"""The saga's storage in PostgreSQL: the catalog database and each shard's (see
``saga_storage`` for what each operation means)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any
from uuid import UUID

import asyncpg

from gateway.errors import ReservationLapsed
from gateway.postgres.advisory_locks import AdvisoryLock
from gateway.postgres.database import Connection
from gateway.postgres.queries import query
from gateway.sharding import decisions, reservations
from gateway.sharding.decisions import Decision
from gateway.sharding.reservations import (
    Reservation,
    ReservationKey,
    ReservationStatus,
    Settlement,
)
from gateway.sharding.saga_storage import DecisionBusy, ShardRecords
from gateway.write_path.idempotency import KeyClaim
from gateway.write_path.models import PlaceOrderRequest
from gateway.write_path.order_status import OrderStatus
from gateway.write_path.orders import Row
from gateway.write_path.placement import PlacedOrder

InsertPlaced = Callable[
    [Connection, UUID, PlaceOrderRequest, KeyClaim | None, Mapping[UUID, Row]],
    Awaitable[PlacedOrder],
]
"""Writes an order with ``order.placed`` in the caller's transaction (the gateway's)."""


def lock_timeout_setting(seconds: float) -> str:
    """PostgreSQL's ``lock_timeout`` for a wait of ``seconds``: whole milliseconds, at least
    one, since ``0`` would mean no limit at all."""
    return f"{max(1, round(seconds * 1000))}ms"


Cancel = Callable[[UUID, int | None], Awaitable[bool]]
"""Cancels an order if it is still at the given version (any, with ``None``); whether it did."""


class PostgresCatalog:
    """The catalog database's reservations, over a pool."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def reserve(
        self,
        order_id: UUID,
        shard: str,
        request: PlaceOrderRequest,
        key: ReservationKey | None,
        seconds: float,
    ) -> Reservation:
        async with self._pool.acquire() as connection, connection.transaction():
            return await reservations.reserve(connection, order_id, shard, request, key, seconds)

    async def settle(
        self, order_id: UUID, settlement: Settlement, shard: str | None = None
    ) -> bool:
        # A commit is one statement; giving units back is a transaction of its own.
        async with self._pool.acquire() as connection:
            if not settlement.restores_units:
                return await reservations.settle(connection, order_id, settlement, shard)
            async with connection.transaction():
                return await reservations.settle(connection, order_id, settlement, shard)

    async def retake(self, order_id: UUID) -> bool:
        async with self._pool.acquire() as connection, connection.transaction():
            return await reservations.retake(connection, order_id)

    async def status_of(self, order_id: UUID) -> ReservationStatus | None:
        async with self._pool.acquire() as connection:
            return await reservations.status_of(connection, order_id)

    async def statuses_of(self, order_ids: Sequence[UUID]) -> dict[UUID, ReservationStatus]:
        rows = await self._pool.fetch(query("reservations_of_orders"), list(order_ids))
        return {row["order_id"]: ReservationStatus(row["status"]) for row in rows}

    async def expired(self, shard: str, limit: int) -> list[UUID]:
        async with self._pool.acquire() as connection:
            return await reservations.expired(connection, shard, limit)

    async def shards_with_expired(self) -> set[str]:
        async with self._pool.acquire() as connection:
            return await reservations.shards_with_expired(connection)

    async def committed_page(self, after: UUID | None, limit: int) -> list[tuple[UUID, str]]:
        rows = await self._pool.fetch(query("committed_reservations_page"), after, limit)
        return [(row["id"], row["shard"]) for row in rows]

    @asynccontextmanager
    async def sweeping(self) -> AsyncIterator[bool]:
        async with self._pool.acquire() as guard, guard.transaction():
            yield bool(
                await guard.fetchval(query("try_advisory_xact_lock"), AdvisoryLock.SAGA_SWEEP)
            )


class PostgresShardRecords:
    """A shard database's saga records, over a pool, or over one connection with every call
    bounded by ``timeout_seconds``."""

    def __init__(
        self, database: asyncpg.Pool | Connection, timeout_seconds: float | None = None
    ) -> None:
        self._database = database
        self._timeout = timeout_seconds

    async def answers(self, timeout_seconds: float) -> None:
        assert isinstance(self._database, asyncpg.Pool)
        async with self._database.acquire(timeout=timeout_seconds) as connection:
            await connection.fetchval("SELECT 1", timeout=timeout_seconds)

    @asynccontextmanager
    async def session(self, timeout_seconds: float) -> AsyncIterator[ShardRecords]:
        assert isinstance(self._database, asyncpg.Pool)
        async with bounded_connection(self._database, timeout_seconds) as connection:
            yield PostgresShardRecords(connection, timeout_seconds)

    async def decide(
        self, order_id: UUID, wanted: Decision, lock_wait_seconds: float | None = None
    ) -> Decision:
        async with self._connection() as connection:
            if lock_wait_seconds is None:
                return await decisions.decide(connection, order_id, wanted, self._timeout)
            lock_wait = lock_timeout_setting(lock_wait_seconds)
            try:
                async with connection.transaction():
                    await connection.execute(
                        query("set_lock_timeout"), lock_wait, timeout=self._timeout
                    )
                    return await decisions.decide(connection, order_id, wanted, self._timeout)
            except asyncpg.LockNotAvailableError as error:
                raise DecisionBusy(str(order_id)) from error

    async def order_statuses(self, order_ids: Sequence[UUID]) -> dict[UUID, OrderStatus]:
        rows = await self._database.fetch(
            query("existing_orders"), list(order_ids), timeout=self._timeout
        )
        return {row["id"]: OrderStatus(row["status"]) for row in rows}

    async def moved_away(self, order_ids: Sequence[UUID]) -> dict[UUID, str]:
        rows = await self._database.fetch(
            query("moved_orders_of"), list(order_ids), timeout=self._timeout
        )
        return {row["order_id"]: row["to_shard"] for row in rows}

    async def live_orders_page(
        self, after: UUID | None, limit: int
    ) -> list[tuple[UUID, OrderStatus]]:
        rows = await self._database.fetch(
            query("live_orders_page"), after, limit, timeout=self._timeout
        )
        return [(row["id"], OrderStatus(row["status"])) for row in rows]

    @asynccontextmanager
    async def locked_order(self, order_id: UUID) -> AsyncIterator[tuple[OrderStatus | None, int]]:
        async with self._connection() as connection, connection.transaction():
            row = await connection.fetchrow(
                query("lock_order_status"), order_id, timeout=self._timeout
            )
            if row is None:
                yield None, 0
            else:
                yield OrderStatus(row["status"]), row["version"]

    async def queued_returns(self, limit: int) -> list[UUID]:
        rows = await self._database.fetch(
            query("queued_inventory_returns"), limit, timeout=self._timeout
        )
        return [row["order_id"] for row in rows]

    async def forget_returns(self, order_ids: Sequence[UUID]) -> None:
        await self._database.execute(
            query("forget_inventory_returns"), list(order_ids), timeout=self._timeout
        )

    @asynccontextmanager
    async def _connection(self) -> AsyncIterator[Any]:
        if isinstance(self._database, asyncpg.Pool):
            async with self._database.acquire() as connection:
                yield connection
        else:
            yield self._database


class PostgresShard(PostgresShardRecords):
    """A shard database as the writers use it: orders are written and cancelled by the
    gateway's own code (``insert_placed``, ``cancel``)."""

    def __init__(self, pool: asyncpg.Pool, insert_placed: InsertPlaced, cancel: Cancel) -> None:
        super().__init__(pool)
        self._pool = pool
        self._insert_placed = insert_placed
        self._cancel = cancel

    async def create_order(
        self,
        order_id: UUID,
        request: PlaceOrderRequest,
        claim: KeyClaim | None,
        products: Mapping[UUID, Row],
    ) -> PlacedOrder:
        async with self._pool.acquire() as connection, connection.transaction():
            placed = await self._insert_placed(connection, order_id, request, claim, products)
            if placed.replayed:
                return placed
            decided = await decisions.decide(connection, order_id, Decision.CREATED)
            if decided is not Decision.CREATED:
                raise ReservationLapsed(order_id)
            return placed

    async def cancel_order(self, order_id: UUID, expected_version: int | None = None) -> bool:
        return await self._cancel(order_id, expected_version)


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
