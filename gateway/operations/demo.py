"""Demo orders: seeds one customer, address pair and product (once), then places orders and
moves one through its life."""

from __future__ import annotations

from decimal import Decimal
from uuid import UUID, uuid4

from gateway.facade.gateway import Gateway
from gateway.postgres.queries import query
from gateway.write_path.models import Order

DEMO_EMAIL = "demo.customer@example.com"
DEMO_SKU = "DEMO-MUG-001"
LIFE = ("confirmed", "processing", "shipped", "delivered")
"""The statuses a walked demo order goes through, in order."""


async def place_demo_order(gateway: Gateway) -> Order:
    """Place one order for the demo customer, seeding the demo data on first use."""
    customer_id, billing_id, shipping_id = await _demo_customer(gateway)
    product_id = await _demo_product(gateway)
    return await gateway.place_order(
        {
            "customer_id": customer_id,
            "billing_address_id": billing_id,
            "shipping_address_id": shipping_id,
            "items": [{"product_id": product_id, "quantity": 2}],
            "customer_segment": "retail",
            "metadata": {"source": "fanout demo"},
        },
        idempotency_key=f"demo-{uuid4()}",
    )


async def walk_demo_order(gateway: Gateway, order: Order) -> Order:
    """Move a placed order through :data:`LIFE`, one event each."""
    for status in LIFE:
        order = await gateway.transition(order.id, status)
    return order


async def _demo_customer(gateway: Gateway) -> tuple[UUID, UUID, UUID]:
    for pool in gateway.order_pools().values():
        row = await pool.fetchrow(query("get_demo_customer"), DEMO_EMAIL)
        if row is not None:
            return row["id"], row["billing_id"], row["shipping_id"]
    address = {"street_address": "1 Example Street", "city": "Springfield", "postal_code": "12345"}
    customer = await gateway.create_customer(
        {
            "email": DEMO_EMAIL,
            "first_name": "Demo",
            "last_name": "Customer",
            "addresses": [
                {**address, "address_type": "billing", "is_default": True},
                {**address, "address_type": "shipping", "is_default": True},
            ],
        }
    )
    billing, shipping = customer.addresses
    return customer.id, billing.id, shipping.id


async def _demo_product(gateway: Gateway) -> UUID:
    product_id: UUID | None = await gateway.pool.fetchval(query("get_product_id_by_sku"), DEMO_SKU)
    if product_id is not None:
        await gateway.pool.execute(query("restock_product"), product_id, 1_000)
        return product_id
    product = await gateway.create_product(
        {
            "sku": DEMO_SKU,
            "name": "Fan-out mug",
            "base_price": Decimal("12.50"),
            "inventory_quantity": 1_000,
        }
    )
    return product.id
