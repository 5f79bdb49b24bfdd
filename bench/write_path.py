"""Write path: orders/s of ``place_order`` vs the same order SQL without outbox and key.

Both variants run side by side in one process, in alternating rounds, against the same
database, at the same concurrency, with the same random order mix, in ABBA order with a
CHECKPOINT before each measurement. The bare variant runs exactly the statements of
``gateway.write_path.orders.insert_order`` in a transaction; the gateway variant adds the
idempotency key and the outbox event (whose trigger queues the NOTIFY).

    .venv/bin/python -m bench.write_path [--seconds 10] [--rounds 3] [--concurrency 32]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import time
import uuid
from collections.abc import Awaitable, Callable
from decimal import Decimal
from typing import Any

from bench.common import scratch_gateway, write_results
from gateway import Gateway, PlaceOrderRequest
from gateway.write_path.orders import insert_order
from gateway.write_path.pricing import PricingPolicy
from support.shop import customer_request

Placer = Callable[[PlaceOrderRequest], Awaitable[Any]]


async def seed(gateway: Gateway, customers: int, products: int) -> list[PlaceOrderRequest]:
    """Customers and products to order from; returns a pool of order requests over them."""
    people = []
    for index in range(customers):
        email = f"bench-{index}-{uuid.uuid4().hex[:6]}@example.com"
        people.append(
            await gateway.create_customer(
                customer_request(email, f"Customer {index}", f"{index} Bench Rd", "Bench")
            )
        )
    catalog = [
        await gateway.create_product(
            {
                "sku": f"BENCH-{index:05d}",
                "name": f"Bench product {index}",
                "base_price": Decimal(random.randint(100, 9_999)) / 100,
                "inventory_quantity": 100_000_000,
            }
        )
        for index in range(products)
    ]
    requests = []
    for _ in range(2_000):
        person = random.choice(people)
        lines = random.sample(catalog, random.randint(1, 3))
        requests.append(
            PlaceOrderRequest(
                customer_id=person.id,
                billing_address_id=person.addresses[0].id,
                shipping_address_id=person.addresses[1].id,
                items=[{"product_id": p.id, "quantity": random.randint(1, 3)} for p in lines],
                customer_segment=random.choice(["retail", "vip", "wholesale"]),
            )
        )
    return requests


async def measure(
    place: Placer, requests: list[PlaceOrderRequest], concurrency: int, seconds: float
) -> float:
    """Orders per second placed by ``concurrency`` workers during ``seconds``."""
    deadline = time.perf_counter() + seconds
    placed = 0

    async def worker() -> None:
        nonlocal placed
        while time.perf_counter() < deadline:
            await place(random.choice(requests))
            placed += 1

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return placed / (time.perf_counter() - started)


async def run(seconds: float, rounds: int, concurrency: int) -> dict[str, Any]:
    async with scratch_gateway(pool_size=concurrency) as gateway:
        requests = await seed(gateway, customers=64, products=500)
        pricing = PricingPolicy.from_settings(gateway.settings.pricing)
        prefix = gateway.settings.orders.number_prefix
        timeout = gateway.settings.orders.payment_timeout_seconds

        async def bare(request: PlaceOrderRequest) -> None:
            async with gateway.pool.acquire() as connection, connection.transaction():
                await insert_order(connection, uuid.uuid4(), request, pricing, prefix, timeout)

        async def with_outbox(request: PlaceOrderRequest) -> None:
            await gateway.place_order(request, idempotency_key=str(uuid.uuid4()))

        await measure(bare, requests, concurrency, 2)  # warm-up: pools, caches, plans
        await measure(with_outbox, requests, concurrency, 2)
        rates: dict[str, list[float]] = {"bare": [], "gateway": []}
        variants: dict[str, Placer] = {"bare": bare, "gateway": with_outbox}
        for round_number in range(1, rounds + 1):
            # ABBA order: the table grows during the run, so neither variant always goes last.
            order = ["bare", "gateway"] if round_number % 2 else ["gateway", "bare"]
            for name in order:
                await gateway.pool.execute("CHECKPOINT")
                rates[name].append(await measure(variants[name], requests, concurrency, seconds))
            bare_rates, gateway_rates = rates["bare"], rates["gateway"]
            print(
                f"round {round_number}: bare {bare_rates[-1]:8.0f} orders/s   "
                f"gateway {gateway_rates[-1]:8.0f} orders/s   "
                f"ratio {gateway_rates[-1] / bare_rates[-1]:.3f}"
            )
    bare_rates, gateway_rates = rates["bare"], rates["gateway"]
    bare_rate, gateway_rate = statistics.median(bare_rates), statistics.median(gateway_rates)
    return {
        "concurrency": concurrency,
        "seconds_per_round": seconds,
        "rounds": rounds,
        "bare_orders_per_second": [round(r, 1) for r in bare_rates],
        "gateway_orders_per_second": [round(r, 1) for r in gateway_rates],
        "bare_median": round(bare_rate, 1),
        "gateway_median": round(gateway_rate, 1),
        "ratio": round(gateway_rate / bare_rate, 3),
        "target_ratio": 0.75,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="length of each round")
    parser.add_argument("--rounds", type=int, default=4, help="rounds of each variant")
    parser.add_argument("--concurrency", type=int, default=32, help="concurrent connections")
    args = parser.parse_args()
    results = asyncio.run(run(args.seconds, args.rounds, args.concurrency))
    path = write_results("write_path", results)
    print(
        f"median: bare {results['bare_median']:.0f} orders/s, gateway "
        f"{results['gateway_median']:.0f} orders/s, ratio {results['ratio']:.3f} "
        f"(target >= {results['target_ratio']}); written to {path}"
    )


if __name__ == "__main__":
    main()
