"""Reads: the API's reads served by the primary only vs. by a streaming replica, side by side.

1. Throughput: ``GET /orders/{id}`` and ``GET /customers/{id}/orders`` (a page of 20) per
   second through ``fanout serve``, one server reading from the primary only and one reading
   from the replica, in alternating rounds (ABBA) over the same seeded database, at the same
   concurrency.
2. Read-your-writes: from a write's commit to the read that sees it, with the write's token
   (served by the replica once it has replayed the write) vs. on the primary; the latency the
   token's wait adds, and how many such reads the replica served.

Both servers, the primary, the replica and the load share this machine's cores, so the
replica adds no capacity here: the figures show what routing costs, not what a replica on
its own machine gains.

    .venv/bin/python -m bench.reads [--seconds 5] [--rounds 2] [--concurrency 16] [--writes 500]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import asyncpg
import httpx

from bench.common import scratch_gateway, write_results
from gateway import Gateway, Settings
from gateway.configuration.settings import PostgresSettings
from support.api_process import api_server, write_config
from support.databases import database_url
from support.eventually import eventually
from support.servers import server_url
from support.shop import Shop


async def seed(gateway: Gateway, customers: int, orders_each: int) -> tuple[list[str], list[str]]:
    """Customers with orders each; their ids and the orders' ids."""
    shop = Shop(gateway)
    product = await shop.product(stock=customers * orders_each * 2)
    customer_ids: list[str] = []
    order_ids: list[str] = []
    for _ in range(customers):
        customer = await shop.customer()
        customer_ids.append(str(customer.id))
        placed = await asyncio.gather(
            *(gateway.place_order(shop.order(customer, (product, 1))) for _ in range(orders_each))
        )
        order_ids.extend(str(order.id) for order in placed)
    return customer_ids, order_ids


async def replica_has(replica_url: str, orders: int) -> None:
    """Wait until the replica holds ``orders`` orders."""
    connection = await asyncpg.connect(replica_url)

    async def caught_up() -> bool:
        return bool(await connection.fetchval("SELECT count(*) FROM orders") >= orders)

    try:
        await eventually(caught_up, within=120)
    finally:
        await connection.close()


async def drive(
    base_url: str, paths: list[str], seconds: float, concurrency: int
) -> dict[str, Any]:
    """GET random ``paths`` with ``concurrency`` workers for ``seconds``: requests/s, latency."""
    latencies: list[float] = []
    failures = 0
    deadline = time.perf_counter() + seconds
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=base_url, limits=limits, timeout=30) as http:

        async def worker() -> None:
            nonlocal failures
            while time.perf_counter() < deadline:
                started = time.perf_counter()
                response = await http.get(random.choice(paths))
                if response.status_code == 200:
                    latencies.append(time.perf_counter() - started)
                else:
                    failures += 1

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    latencies.sort()
    return {
        "requests_per_second": round(len(latencies) / elapsed, 1),
        "p50_ms": round(latencies[len(latencies) // 2] * 1000, 2),
        "p99_ms": round(latencies[int(len(latencies) * 0.99)] * 1000, 2),
        "failures": failures,
    }


async def read_your_writes(
    primary: Gateway, replicated: Gateway, customer: Any, product: Any, writes: int
) -> dict[str, Any]:
    """From each write's return to the read that sees it: with the token, and on the primary."""
    shop = Shop(replicated)
    with_token: list[float] = []
    on_primary: list[float] = []
    [replica] = replicated.replicas
    served_before = replica.reads
    for _ in range(writes):
        order = await replicated.place_order(shop.order(customer, (product, 1)))
        started = time.perf_counter()
        read = await replicated.get_order(order.id, consistency_token=order.consistency_token)
        with_token.append(time.perf_counter() - started)
        assert read.version == order.version
        started = time.perf_counter()
        await primary.get_order(order.id)
        on_primary.append(time.perf_counter() - started)
    return {
        "writes": writes,
        "read_with_token_p50_ms": _ms(statistics.median(with_token)),
        "read_with_token_p99_ms": _ms(statistics.quantiles(with_token, n=100)[98]),
        "read_on_primary_p50_ms": _ms(statistics.median(on_primary)),
        "read_on_primary_p99_ms": _ms(statistics.quantiles(on_primary, n=100)[98]),
        "served_by_replica": replica.reads - served_before,
    }


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 3)


async def run(args: argparse.Namespace) -> dict[str, Any]:
    async with scratch_gateway(pool_size=20) as gateway:
        url = gateway.settings.postgres.url.get_secret_value()
        name = urlsplit(url).path.lstrip("/")
        replica_url = database_url(server_url("postgres-replica"), name)
        customers, orders = await seed(gateway, args.customers, args.orders_each)
        await replica_has(replica_url, len(orders))
        order_paths = [f"/orders/{order}" for order in orders]
        page_paths = [f"/customers/{customer}/orders?limit=20" for customer in customers]
        sinks = {"memory": {"type": "memory"}}
        with tempfile.TemporaryDirectory() as directory:
            folder = Path(directory)
            primary_config = write_config(
                folder, {"postgres": {"url": url}, "sinks": sinks}, "primary.yaml"
            )
            replica_config = write_config(
                folder,
                {"postgres": {"url": url, "replicas": [replica_url]}, "sinks": sinks},
                "replica.yaml",
            )
            throughput: dict[str, dict[str, list[dict[str, Any]]]] = {
                "primary": {"order": [], "page": []},
                "replica": {"order": [], "page": []},
            }
            async with api_server(primary_config) as primary, api_server(replica_config) as replica:
                servers = {"primary": primary.url, "replica": replica.url}
                for round_number in range(args.rounds):
                    order = (
                        ["primary", "replica"] if round_number % 2 == 0 else ["replica", "primary"]
                    )
                    for target in order:
                        for kind, paths in (("order", order_paths), ("page", page_paths)):
                            result = await drive(
                                servers[target], paths, args.seconds, args.concurrency
                            )
                            throughput[target][kind].append(result)
        shop = Shop(gateway)
        customer, product = await shop.customer(), await shop.product(stock=args.writes * 2)
        replicated_settings = Settings(
            postgres=PostgresSettings(url=url, replicas=[replica_url], pool_max_size=4)
        )
        async with await Gateway.connect(replicated_settings) as replicated:
            await eventually(lambda: replicated.replicas[0].usable, within=60)
            consistency = await read_your_writes(
                gateway, replicated, customer, product, args.writes
            )
    summary = {
        target: {
            kind: {
                "requests_per_second": statistics.median(r["requests_per_second"] for r in runs),
                "p50_ms": statistics.median(r["p50_ms"] for r in runs),
                "p99_ms": statistics.median(r["p99_ms"] for r in runs),
                "failures": sum(r["failures"] for r in runs),
            }
            for kind, runs in kinds.items()
        }
        for target, kinds in throughput.items()
    }
    return {
        "parameters": vars(args),
        "seeded": {"customers": len(customers), "orders": len(orders)},
        "throughput": summary,
        "rounds": throughput,
        "read_your_writes": consistency,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5, help="length of each measurement")
    parser.add_argument("--rounds", type=int, default=2, help="alternating rounds; medians count")
    parser.add_argument("--concurrency", type=int, default=16, help="requests in flight")
    parser.add_argument("--customers", type=int, default=50, help="customers seeded")
    parser.add_argument("--orders-each", type=int, default=20, help="orders per customer")
    parser.add_argument("--writes", type=int, default=500, help="writes read back with a token")
    args = parser.parse_args()
    results = asyncio.run(run(args))
    for kind, label in (("order", "GET /orders/{id}"), ("page", "GET /customers/{id}/orders")):
        primary = results["throughput"]["primary"][kind]
        replica = results["throughput"]["replica"][kind]
        print(
            f"{label:28} primary {primary['requests_per_second']:8.0f}/s "
            f"p99 {primary['p99_ms']:6.1f} ms   replica {replica['requests_per_second']:8.0f}/s "
            f"p99 {replica['p99_ms']:6.1f} ms   replica/primary "
            f"{replica['requests_per_second'] / primary['requests_per_second']:.2f}"
        )
    ryw = results["read_your_writes"]
    print(
        f"read after write: with token p50 {ryw['read_with_token_p50_ms']} ms "
        f"p99 {ryw['read_with_token_p99_ms']} ms ({ryw['served_by_replica']} of {ryw['writes']} "
        f"from the replica); on the primary p50 {ryw['read_on_primary_p50_ms']} ms "
        f"p99 {ryw['read_on_primary_p99_ms']} ms"
    )
    print(f"written to {write_results('reads', results)}")


if __name__ == "__main__":
    main()
