"""The layout of unsharded mode: one PostgreSQL database, read replicas if configured."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import TypeVar
from uuid import UUID, uuid4

import asyncpg

from gateway.configuration.settings import Settings
from gateway.postgres import outbox
from gateway.postgres.database import Connection, create_pool
from gateway.postgres.replicas import ReadRouter, ReplicaState
from gateway.postgres.tokens import ConsistencyToken
from gateway.postgres.topology import SINGLE, Topology
from gateway.write_path import customers, idempotency
from gateway.write_path.idempotency import KeyClaim
from gateway.write_path.models import (
    Customer,
    CustomerRequest,
    Order,
    PlaceOrderRequest,
    StoredRecord,
)
from gateway.write_path.placement import OrderPlacer, PlacedOrder

T = TypeVar("T")
R = TypeVar("R", bound=StoredRecord)


class OneDatabase:
    """Every row in one database: a placement is one transaction; reads go to a replica
    when replicas are configured (see :class:`~gateway.postgres.replicas.ReadRouter`)."""

    def __init__(self, pool: asyncpg.Pool, settings: Settings, placer: OrderPlacer) -> None:
        self._pool = pool
        self._topology = Topology.of(settings.postgres)
        self._reads = ReadRouter(pool, settings.postgres)
        self._placer = placer

    @classmethod
    async def open(cls, settings: Settings, placer: OrderPlacer) -> OneDatabase:
        """Open a pool to the database and start watching its replicas (a replica that is
        down is used once it answers)."""
        layout = cls(await create_pool(settings.postgres), settings, placer)
        await layout._reads.start()
        return layout

    @property
    def topology(self) -> Topology:
        return self._topology

    @property
    def pool(self) -> asyncpg.Pool:
        return self._pool

    @property
    def replicas(self) -> list[ReplicaState]:
        return self._reads.states

    def order_pools(self) -> Mapping[str, asyncpg.Pool]:
        return {SINGLE: self._pool}

    async def order_pool(self, order_id: UUID) -> asyncpg.Pool:
        return self._pool

    async def customer_pool(self, customer_id: UUID) -> asyncpg.Pool:
        return self._pool

    async def on_order(self, order_id: UUID, work: Callable[[asyncpg.Pool], Awaitable[T]]) -> T:
        return await work(self._pool)

    async def on_customer(
        self, customer_id: UUID, work: Callable[[asyncpg.Pool], Awaitable[T]]
    ) -> T:
        return await work(self._pool)

    async def place(self, request: PlaceOrderRequest, claim: KeyClaim | None) -> PlacedOrder:
        async with self._pool.acquire() as connection:
            async with connection.transaction():
                placed = await self._placer.insert_placed(connection, uuid4(), request, claim)
            return PlacedOrder(
                await self.committed(self._pool, connection, placed.order), placed.replayed
            )

    async def create_customer(self, request: CustomerRequest) -> Customer:
        async with self._pool.acquire() as connection:
            async with connection.transaction():
                customer = await customers.insert_customer(connection, request)
                await outbox.append(connection, [customers.customer_event(customer)])
            return await self.committed(self._pool, connection, customer)

    async def read(
        self,
        pool: asyncpg.Pool,
        read: Callable[[Connection], Awaitable[T]],
        token: ConsistencyToken | None,
    ) -> T:
        return await self._reads.run(read, token)

    async def committed(self, pool: asyncpg.Pool, connection: Connection, record: R) -> R:
        if self._reads.enabled:
            record._consistency_token = await self._reads.token_after(connection)
        return record

    async def after_change(self, order: Order) -> None:
        """Nothing: in one database a change is complete when it commits."""

    async def purge_expired_idempotency_keys(self) -> int:
        async with self._pool.acquire() as connection:
            return await idempotency.purge_expired(connection)

    async def close(self) -> None:
        await self._reads.close()
        await self._pool.close()
