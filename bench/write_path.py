"""Write path: orders/s of ``place_order`` vs the same placement done by the server in one
call, and vs the same order SQL without outbox and key.

Three variants run side by side in one process, in rounds, against the same database, at the
same concurrency, with the same random order mix, with a CHECKPOINT before each measurement;
each round starts with the next variant (the table grows during the run, so none always goes
last). ``bare`` runs exactly the statements of ``gateway.write_path.orders.insert_order`` in a
transaction; ``gateway`` is ``Gateway.place_order`` with an idempotency key (the order, the key
and the ``order.placed`` event in the outbox and the order's stream); ``server_side`` does what
``gateway`` does in one round trip, through the PL/pgSQL function of
``bench/sql/place_order_function.sql``, created in the scratch database only.

``--without-notify`` drops the outbox's wake-up trigger in the scratch database, to measure
what notifying relays costs every variant that writes the outbox.

    .venv/bin/python -m bench.write_path [--seconds 10] [--rounds 4] [--concurrency 32]
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
from pathlib import Path
from typing import Any

from bench.common import scratch_gateway, write_results
from gateway import Gateway, PlaceOrderRequest
from gateway.postgres.database import Connection
from gateway.write_path import idempotency
from gateway.write_path.orders import insert_order
from gateway.write_path.placement import PLACE_ORDER_SCOPE
from gateway.write_path.pricing import PricingPolicy
from support.shop import customer_request

Placer = Callable[[PlaceOrderRequest], Awaitable[Any]]

PLACE_ORDER_FUNCTION = Path(__file__).resolve().parent / "sql" / "place_order_function.sql"
VARIANTS = ("bare", "gateway", "server_side")
TARGET_RATIO = 0.9
"""Of ``gateway`` to ``server_side``."""


async def create_place_order_function(connection: Connection) -> None:
    """Create ``bench_place_order`` (the server-side placement) in the connection's database."""
    await connection.execute(PLACE_ORDER_FUNCTION.read_text())


async def place_server_side(
    connection: Connection, gateway: Gateway, request: PlaceOrderRequest, key: str
) -> dict[str, Any]:
    """Place ``request`` with idempotency ``key`` in one call of ``bench_place_order``; the
    order as its ``order.placed`` event carries it (without the customer)."""
    settings = gateway.settings
    pricing = settings.pricing
    order: dict[str, Any] = await connection.fetchval(
        "SELECT bench_place_order("
        "$1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19,"
        " $20, $21)",
        uuid.uuid4(),
        request.customer_id,
        request.billing_address_id,
        request.shipping_address_id,
        [item.product_id for item in request.items],
        [item.quantity for item in request.items],
        request.customer_segment,
        request.metadata,
        request.notes,
        PLACE_ORDER_SCOPE,
        idempotency.validate_key(key),
        idempotency.request_fingerprint(request),
        float(settings.idempotency.retention_seconds),
        settings.orders.number_prefix,
        settings.orders.payment_timeout_seconds,
        pricing.tax_rate,
        pricing.shipping_flat,
        pricing.free_shipping_threshold,
        pricing.currency,
        uuid.uuid4(),
        {"idempotency_key": key},
    )
    return order


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


async def run(
    seconds: float, rounds: int, concurrency: int, without_notify: bool = False
) -> dict[str, Any]:
    async with scratch_gateway(pool_size=concurrency) as gateway:
        requests = await seed(gateway, customers=64, products=500)
        pricing = PricingPolicy.from_settings(gateway.settings.pricing)
        prefix = gateway.settings.orders.number_prefix
        timeout = gateway.settings.orders.payment_timeout_seconds
        async with gateway.pool.acquire() as connection:
            await create_place_order_function(connection)
            if without_notify:
                await connection.execute("DROP TRIGGER outbox_notify ON outbox")

        async def bare(request: PlaceOrderRequest) -> None:
            async with gateway.pool.acquire() as connection, connection.transaction():
                await insert_order(connection, uuid.uuid4(), request, pricing, prefix, timeout)

        async def with_outbox(request: PlaceOrderRequest) -> None:
            await gateway.place_order(request, idempotency_key=str(uuid.uuid4()))

        async def server_side(request: PlaceOrderRequest) -> None:
            async with gateway.pool.acquire() as connection:
                await place_server_side(connection, gateway, request, str(uuid.uuid4()))

        variants: dict[str, Placer] = {
            "bare": bare,
            "gateway": with_outbox,
            "server_side": server_side,
        }
        for place in variants.values():  # warm-up: pools, caches, plans
            await measure(place, requests, concurrency, 2)
        rates: dict[str, list[float]] = {name: [] for name in VARIANTS}
        for round_number in range(rounds):
            # Each round starts one variant later: the table grows during the run.
            shift = round_number % len(VARIANTS)
            for name in VARIANTS[shift:] + VARIANTS[:shift]:
                await gateway.pool.execute("CHECKPOINT")
                rates[name].append(await measure(variants[name], requests, concurrency, seconds))
            print(
                f"round {round_number + 1}: "
                + "   ".join(f"{name} {rates[name][-1]:8.0f}" for name in VARIANTS)
                + f"   gateway/server_side {rates['gateway'][-1] / rates['server_side'][-1]:.3f}"
            )
    medians = {name: statistics.median(rates[name]) for name in VARIANTS}
    return {
        "concurrency": concurrency,
        "seconds_per_round": seconds,
        "rounds": rounds,
        "notify_trigger": not without_notify,
        **{f"{name}_orders_per_second": [round(r, 1) for r in rates[name]] for name in VARIANTS},
        **{f"{name}_median": round(medians[name], 1) for name in VARIANTS},
        "ratio_to_server_side": round(medians["gateway"] / medians["server_side"], 3),
        "ratio_to_bare": round(medians["gateway"] / medians["bare"], 3),
        "target_ratio_to_server_side": TARGET_RATIO,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="length of each round")
    parser.add_argument("--rounds", type=int, default=4, help="rounds of each variant")
    parser.add_argument("--concurrency", type=int, default=32, help="concurrent connections")
    parser.add_argument(
        "--without-notify",
        action="store_true",
        help="drop the outbox's wake-up trigger in the scratch database",
    )
    args = parser.parse_args()
    results = asyncio.run(run(args.seconds, args.rounds, args.concurrency, args.without_notify))
    path = write_results("write_path", results)
    print(
        "median: "
        + ", ".join(f"{name} {results[f'{name}_median']:.0f}" for name in VARIANTS)
        + f" orders/s; gateway/server_side {results['ratio_to_server_side']:.3f} (target >= "
        f"{TARGET_RATIO}), gateway/bare {results['ratio_to_bare']:.3f}; written to {path}"
    )


if __name__ == "__main__":
    main()
