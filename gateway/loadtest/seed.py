"""The load test's own customers, addresses and products, tagged with the run's id.

Everything is new rows under names no one else uses (``lt-<run>-…``), so a load test never
changes or depends on existing data. Products get far more stock than the run can take.
"""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from gateway.errors import AlreadyExists, GatewayError
from gateway.facade.gateway import Gateway

STOCK = 1_000_000_000
SEGMENTS = ("retail", "vip", "wholesale")
EMAIL_DOMAIN = "loadtest.invalid"


@dataclass(frozen=True)
class Buyer:
    """A seeded customer and its two addresses."""

    customer_id: str
    billing_address_id: str
    shipping_address_id: str


@dataclass(frozen=True)
class Catalog:
    """What the run's orders are made of."""

    run_id: str
    buyers: list[Buyer]
    product_ids: list[str]

    def order_request(self, rng: random.Random) -> dict[str, Any]:
        """A valid order of one to three different products."""
        buyer = rng.choice(self.buyers)
        products = rng.sample(self.product_ids, k=min(len(self.product_ids), rng.randint(1, 3)))
        return {
            "customer_id": buyer.customer_id,
            "billing_address_id": buyer.billing_address_id,
            "shipping_address_id": buyer.shipping_address_id,
            "items": [{"product_id": p, "quantity": rng.randint(1, 3)} for p in products],
            "customer_segment": rng.choice(SEGMENTS),
            "metadata": {"source": "loadtest", "run": self.run_id},
        }


def email_pattern(run_id: str) -> str:
    """A LIKE pattern matching the emails of the run's customers."""
    return f"lt-{run_id}-%@{EMAIL_DOMAIN}"


async def seed(gateway: Gateway, run_id: str, customers: int, products: int) -> Catalog:
    """Create the run's customers (with addresses) and products, a few at a time."""
    limit = asyncio.Semaphore(8)

    async def buyer(index: int) -> Buyer:
        address = {"street_address": f"{index} Load St", "city": "Testville", "postal_code": "0"}
        async with limit:
            customer = await gateway.create_customer(
                {
                    "email": f"lt-{run_id}-{index}@{EMAIL_DOMAIN}",
                    "first_name": "Load",
                    "last_name": f"Test {index}",
                    "addresses": [
                        {**address, "address_type": "billing"},
                        {**address, "address_type": "shipping"},
                    ],
                }
            )
        kinds = {a.address_type: str(a.id) for a in customer.addresses}
        return Buyer(str(customer.id), kinds["billing"], kinds["shipping"])

    async def product(index: int) -> str:
        async with limit:
            created = await gateway.create_product(
                {
                    "sku": f"LT-{run_id}-{index}",
                    "name": f"Load test item {index}",
                    "base_price": Decimal(5 + index % 50) + Decimal("0.99"),
                    "inventory_quantity": STOCK,
                }
            )
        return str(created.id)

    try:
        buyers = await asyncio.gather(*(buyer(i) for i in range(customers)))
    except AlreadyExists:
        raise GatewayError(
            f"the run {run_id!r} already has seeded customers: give a --run-id (or --part) "
            "of its own to each run"
        ) from None
    product_ids = await asyncio.gather(*(product(i) for i in range(products)))
    return Catalog(run_id, list(buyers), list(product_ids))
