"""Test data: customers with addresses, products, and order requests over them."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import asyncpg

from gateway import Customer, Gateway, Product


def customer_request(
    email: str, last_name: str, street_address: str, first_name: str = "Test"
) -> dict[str, Any]:
    """A customer with a default billing and a default shipping address, both at one street."""
    address = {"street_address": street_address, "city": "Springfield", "postal_code": "1234"}
    return {
        "email": email,
        "first_name": first_name,
        "last_name": last_name,
        "addresses": [
            {**address, "address_type": "billing", "is_default": True},
            {**address, "address_type": "shipping", "is_default": True},
        ],
    }


@dataclass(frozen=True)
class RowCounts:
    """How many rows each write-path table holds."""

    orders: int
    order_items: int
    outbox: int
    idempotency_keys: int
    inventory: int


class Shop:
    """Creates what an order needs, each with unique names."""

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway

    async def customer(self) -> Customer:
        """A new customer with a default billing and shipping address."""
        tag = uuid.uuid4().hex[:10]
        return await self.gateway.create_customer(
            customer_request(f"customer-{tag}@example.com", f"Customer {tag}", f"{tag} Main St")
        )

    async def product(self, price: str = "10.00", stock: int = 100) -> Product:
        """A new active product."""
        tag = uuid.uuid4().hex[:10]
        return await self.gateway.create_product(
            {
                "sku": f"SKU-{tag}",
                "name": f"Product {tag}",
                "base_price": Decimal(price),
                "inventory_quantity": stock,
            }
        )

    @staticmethod
    def order(customer: Customer, *lines: tuple[Product, int], **extra: Any) -> dict[str, Any]:
        """A place-order request for ``customer`` with ``(product, quantity)`` lines."""
        billing = next(a for a in customer.addresses if a.address_type == "billing")
        shipping = next(a for a in customer.addresses if a.address_type == "shipping")
        return {
            "customer_id": str(customer.id),
            "billing_address_id": str(billing.id),
            "shipping_address_id": str(shipping.id),
            "items": [{"product_id": str(p.id), "quantity": q} for p, q in lines],
            **extra,
        }

    def order_databases(self) -> list[asyncpg.Pool]:
        """The pools of the databases holding orders: the one database, or every shard."""
        if self.gateway.topology.sharded:
            return list(self.gateway.sharding.shards.values())
        return [self.gateway.pool]

    async def counts(self) -> RowCounts:
        """Row counts of the write-path tables (over every shard in sharded mode), and the
        total units in stock."""
        totals = dict.fromkeys(("orders", "order_items", "outbox", "idempotency_keys"), 0)
        for pool in self.order_databases():
            row = await pool.fetchrow(
                """
                SELECT (SELECT count(*) FROM orders) AS orders,
                       (SELECT count(*) FROM order_items) AS order_items,
                       (SELECT count(*) FROM outbox) AS outbox,
                       (SELECT count(*) FROM idempotency_keys) AS idempotency_keys
                """
            )
            assert row is not None
            for name in totals:
                totals[name] += row[name]
        inventory = await self.gateway.pool.fetchval(
            "SELECT coalesce(sum(inventory_quantity), 0) FROM products"
        )
        return RowCounts(**totals, inventory=inventory)

    async def stock(self, product: Product) -> int:
        """Units of ``product`` in stock now."""
        value = await self.gateway.pool.fetchval(
            "SELECT inventory_quantity FROM products WHERE id = $1", product.id
        )
        return int(value)

    async def events_of(self, aggregate_id: uuid.UUID) -> list[dict[str, Any]]:
        """The outbox events of one aggregate, in append order (wherever they are)."""
        found: list[dict[str, Any]] = []
        for pool in self.order_databases():
            rows = await pool.fetch(
                "SELECT * FROM outbox WHERE aggregate_id = $1 ORDER BY id", str(aggregate_id)
            )
            found.extend(dict(row) for row in rows)
        return found


REJECTED_NOTES = "reject me"
"""The notes of an order whose ``order.placed`` :func:`outbox_rejecting` refuses."""


@asynccontextmanager
async def outbox_rejecting(pool: asyncpg.Pool) -> AsyncIterator[None]:
    """While open, the outbox of ``pool``'s database refuses (raises on) an event whose payload
    has the notes :data:`REJECTED_NOTES`: a failure after an order's rows, inside its
    transaction."""
    await pool.execute(
        f"""
        CREATE FUNCTION reject_marked_event() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            IF NEW.payload->>'notes' = '{REJECTED_NOTES}' THEN
                RAISE EXCEPTION 'outbox rejected the event';
            END IF;
            RETURN NEW;
        END $$;
        CREATE TRIGGER reject_marked_event BEFORE INSERT ON outbox
            FOR EACH ROW EXECUTE FUNCTION reject_marked_event();
        """
    )
    try:
        yield
    finally:
        await pool.execute(
            "DROP TRIGGER reject_marked_event ON outbox; DROP FUNCTION reject_marked_event();"
        )
