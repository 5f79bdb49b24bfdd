"""What the facade asks of the databases' layout: where a customer's or an order's rows live,
how an order is placed, how a read runs and what follows a change. One database and sharded
mode answer differently; the facade's methods are written once over either."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Protocol, TypeVar
from uuid import UUID

import asyncpg

from gateway.postgres.database import Connection
from gateway.postgres.replicas import ReplicaState
from gateway.postgres.tokens import ConsistencyToken
from gateway.postgres.topology import Topology
from gateway.write_path.idempotency import KeyClaim
from gateway.write_path.models import (
    Customer,
    CustomerRequest,
    Order,
    PlaceOrderRequest,
    StoredRecord,
)
from gateway.write_path.placement import PlacedOrder

T = TypeVar("T")
R = TypeVar("R", bound=StoredRecord)


class Layout(Protocol):
    """The databases behind a gateway, and what differs between one database and shards."""

    @property
    def topology(self) -> Topology:
        """The databases, as the settings name them."""
        ...

    @property
    def pool(self) -> asyncpg.Pool:
        """The pool of the one database, or of the catalog."""
        ...

    @property
    def replicas(self) -> list[ReplicaState]:
        """Each configured read replica's state, as last checked."""
        ...

    def order_pools(self) -> Mapping[str, asyncpg.Pool]:
        """The pools of the databases that hold orders, by database name."""
        ...

    async def order_pool(self, order_id: UUID) -> asyncpg.Pool:
        """The pool of the database that holds order ``order_id``."""
        ...

    async def customer_pool(self, customer_id: UUID) -> asyncpg.Pool:
        """The pool of the database that holds customer ``customer_id``."""
        ...

    async def on_order(self, order_id: UUID, work: Callable[[asyncpg.Pool], Awaitable[T]]) -> T:
        """Run ``work`` over the pool of the database that holds order ``order_id`` (in
        sharded mode, following the order when it moved to another shard)."""
        ...

    async def on_customer(
        self, customer_id: UUID, work: Callable[[asyncpg.Pool], Awaitable[T]]
    ) -> T:
        """Run ``work`` over the pool of the database that holds customer ``customer_id``
        (in sharded mode, following the customer when it moved to another shard)."""
        ...

    async def place(self, request: PlaceOrderRequest, claim: KeyClaim | None) -> PlacedOrder:
        """Place the checked ``request``: its order created and its units taken, or, when an
        earlier request holds its key, that request's order (replayed)."""
        ...

    async def create_customer(self, request: CustomerRequest) -> Customer:
        """Create the customer (and its addresses) with ``customer.created``."""
        ...

    async def read(
        self,
        pool: asyncpg.Pool,
        read: Callable[[Connection], Awaitable[T]],
        token: ConsistencyToken | None,
    ) -> T:
        """Run ``read`` over ``pool``'s database, or one of its replicas that has ``token``
        (a token of another database: over ``pool``'s)."""
        ...

    async def committed(self, pool: asyncpg.Pool, connection: Connection, record: R) -> R:
        """``record``, with the consistency token of the write just committed on
        ``connection`` (one of ``pool``'s) when reads of that database may go to replicas."""
        ...

    async def after_change(self, order: Order) -> None:
        """What follows a committed change of ``order``."""
        ...

    async def purge_expired_idempotency_keys(self) -> int:
        """Forget idempotency keys older than the retention, in every database; how many."""
        ...

    async def close(self) -> None:
        """Close every pool."""
        ...
