"""What the saga storage's contract needs besides the storage: products with stock, customers
on a given shard, and a way to let a reservation expire; in memory and in PostgreSQL."""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass, replace
from typing import Any
from uuid import UUID

from gateway import Gateway
from gateway.sharding.move_rules import MoveState
from gateway.sharding.saga_storage import CatalogStorage, ShardStorage
from gateway.write_path.idempotency import KeyClaim
from gateway.write_path.models import PlaceOrderRequest
from simulation.saga_storage import InMemoryCatalog, InMemoryShard, move_customer
from support.shop import Shop

SHARDS = ("alpha", "beta")


@dataclass(frozen=True)
class Buyer:
    """A customer and the addresses an order of theirs names."""

    customer_id: UUID
    shard: str
    billing: UUID
    shipping: UUID

    def order(self, *lines: tuple[UUID, int]) -> PlaceOrderRequest:
        """A place-order request of this customer for ``(product, quantity)`` lines."""
        return PlaceOrderRequest(
            customer_id=self.customer_id,
            billing_address_id=self.billing,
            shipping_address_id=self.shipping,
            items=[{"product_id": product, "quantity": quantity} for product, quantity in lines],
        )


def claim(key: str, request: str = "request-1") -> KeyClaim:
    """A place-order key claim for the request named ``request`` (a fingerprint's length)."""
    return KeyClaim("place_order", key, hashlib.sha256(request.encode()).hexdigest(), 3600)


class SagaHarness:
    """A saga storage under test, with what its tests set up."""

    catalog: CatalogStorage

    def shard(self, name: str) -> ShardStorage:
        """The storage of shard ``name``."""
        raise NotImplementedError

    async def product(self, stock: int) -> UUID:
        """A new product with ``stock`` units."""
        raise NotImplementedError

    async def stock(self, product: UUID) -> int:
        """The product's units in inventory."""
        raise NotImplementedError

    async def buyer(self, shard: str) -> Buyer:
        """A new customer on ``shard``."""
        raise NotImplementedError

    async def expire(self, order_id: UUID, seconds_ago: float = 1.0) -> None:
        """Let the reservation of ``order_id`` expire ``seconds_ago``."""
        raise NotImplementedError

    async def move(self, buyer: Buyer, target: str) -> Buyer:
        """Move the buyer, with its orders, to shard ``target`` as ``fanout shards move``
        does, to its end (the catalog names ``target``, the source forgot the decisions)."""
        raise NotImplementedError


class MemoryHarness(SagaHarness):
    """The in-memory storage, on a clock the test moves."""

    def __init__(self) -> None:
        self.now = 1_000.0
        self.memory = InMemoryCatalog({}, lambda: self.now)
        self.catalog = self.memory
        self.shards = {name: InMemoryShard(name) for name in SHARDS}

    def shard(self, name: str) -> ShardStorage:
        return self.shards[name]

    async def product(self, stock: int) -> UUID:
        product = uuid.uuid4()
        self.memory.stock[product] = stock
        return product

    async def stock(self, product: UUID) -> int:
        return self.memory.stock[product]

    async def buyer(self, shard: str) -> Buyer:
        return Buyer(uuid.uuid4(), shard, uuid.uuid4(), uuid.uuid4())

    async def expire(self, order_id: UUID, seconds_ago: float = 1.0) -> None:
        self.memory.reservations[order_id].expires_at = self.now - seconds_ago

    async def move(self, buyer: Buyer, target: str) -> Buyer:
        source = self.shards[buyer.shard]
        await move_customer(self.memory, source, self.shards[target], buyer.customer_id)
        return replace(buyer, shard=target)


class PostgresHarness(SagaHarness):
    """The PostgreSQL storage of a sharded gateway over fresh databases."""

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway
        self.shop = Shop(gateway)
        self.catalog = gateway.sharding.saga_catalog

    def shard(self, name: str) -> ShardStorage:
        return self.gateway.sharding.saga_shard(name)

    async def product(self, stock: int) -> UUID:
        return (await self.shop.product(stock=stock)).id

    async def stock(self, product: UUID) -> int:
        units: int = await self.gateway.pool.fetchval(
            "SELECT inventory_quantity FROM products WHERE id = $1", product
        )
        return units

    async def buyer(self, shard: str) -> Buyer:
        while True:
            customer = await self.shop.customer()
            if await self.gateway.sharding.shard_of_customer(customer.id) == shard:
                break
        addresses: dict[str, Any] = {a.address_type: a.id for a in customer.addresses}
        return Buyer(customer.id, shard, addresses["billing"], addresses["shipping"])

    async def expire(self, order_id: UUID, seconds_ago: float = 1.0) -> None:
        await self.gateway.pool.execute(
            "UPDATE inventory_reservations SET expires_at = now() - make_interval(secs => $2)"
            " WHERE order_id = $1",
            order_id,
            seconds_ago,
        )

    async def move(self, buyer: Buyer, target: str) -> Buyer:
        moved = await self.gateway.sharding.move_customer(buyer.customer_id, target)
        assert moved.move.state is MoveState.DONE, moved.move.last_error
        return replace(buyer, shard=target)
