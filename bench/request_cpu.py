"""CPU per placed order: in the embedded gateway, and in the API server process.

1. Embedded: ``Gateway.place_order`` by ``--concurrency`` tasks in this process; the process's
   CPU time (user + system) per order, and the functions that spend it (cProfile, top 15 by
   own time).
2. Through HTTP: the same orders posted to ``fanout serve`` (one worker) by an aiohttp client
   in this process; the server process's CPU per order, read from ``/proc/<pid>/stat``, and
   the client's own CPU per request.

Both run over one scratch database, side by side in one run. The server's PostgreSQL work is
in PostgreSQL's processes and counted in neither.

    .venv/bin/python -m bench.request_cpu [--orders 3000] [--concurrency 16]
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import os
import pstats
import random
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import aiohttp

from bench.common import scratch_gateway, write_results
from bench.write_path import seed
from gateway import Gateway, PlaceOrderRequest
from support.api_process import api_server, write_config

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def process_cpu_seconds(pid: int) -> float:
    """User plus system CPU seconds of process ``pid`` so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


async def embedded(
    gateway: Gateway, requests: list[PlaceOrderRequest], orders: int, concurrency: int
) -> dict[str, Any]:
    """CPU per order of ``place_order`` in this process."""
    remaining = orders

    async def worker() -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            await gateway.place_order(random.choice(requests), idempotency_key=str(uuid.uuid4()))

    cpu, wall = time.process_time(), time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    return {
        "orders": orders,
        "orders_per_second": round(orders / wall, 1),
        "cpu_ms_per_order": round(cpu * 1000 / orders, 3),
    }


def profile_top(profile: cProfile.Profile, count: int = 15) -> list[str]:
    """The functions with the most own time, one line each."""
    text = io.StringIO()
    pstats.Stats(profile, stream=text).sort_stats("tottime").print_stats(count)
    lines = text.getvalue().splitlines()
    start = next(i for i, line in enumerate(lines) if line.lstrip().startswith("ncalls"))
    return [line.rstrip() for line in lines[start : start + count + 1]]


async def over_http(
    url: str, pid: int, bodies: list[bytes], orders: int, concurrency: int
) -> dict[str, Any]:
    """CPU per order of the server process ``pid``, and of this client."""
    remaining = orders
    failures = 0
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as http:

        async def worker() -> None:
            nonlocal remaining, failures
            while remaining > 0:
                remaining -= 1
                headers = {"Content-Type": "application/json", "Idempotency-Key": str(uuid.uuid4())}
                async with http.post(
                    url + "/orders", data=random.choice(bodies), headers=headers
                ) as r:
                    await r.read()
                    failures += r.status != 201

        server, client, wall = process_cpu_seconds(pid), time.process_time(), time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        server = process_cpu_seconds(pid) - server
        client, wall = time.process_time() - client, time.perf_counter() - wall
    return {
        "orders": orders,
        "failures": failures,
        "orders_per_second": round(orders / wall, 1),
        "server_cpu_ms_per_order": round(server * 1000 / orders, 3),
        "client_cpu_ms_per_request": round(client * 1000 / orders, 3),
    }


async def run(orders: int, concurrency: int) -> dict[str, Any]:
    async with scratch_gateway(pool_size=concurrency) as gateway:
        requests = await seed(gateway, customers=64, products=500)
        await embedded(gateway, requests, 300, concurrency)  # warm-up: pools, plans
        in_process = await embedded(gateway, requests, orders, concurrency)
        print(f"embedded: {in_process}")
        profile = cProfile.Profile()
        profile.enable()
        await embedded(gateway, requests, min(orders, 1000), concurrency)
        profile.disable()
        top = profile_top(profile)
        bodies = [request.model_dump_json().encode() for request in requests]
        url = gateway.settings.postgres.url.get_secret_value()
        with tempfile.TemporaryDirectory() as directory:
            config = write_config(
                Path(directory),
                {
                    "postgres": {"url": url, "pool_min_size": concurrency,
                                 "pool_max_size": concurrency},
                    "sinks": {"memory": {"type": "memory"}},
                },
            )  # fmt: skip
            async with api_server(config) as api:
                pid = api.server.process.pid
                await over_http(api.url, pid, bodies, 300, concurrency)  # warm-up
                http = await over_http(api.url, pid, bodies, orders, concurrency)
        print(f"http: {http}")
    print("embedded profile (own time):")
    print("\n".join(top))
    return {
        "concurrency": concurrency,
        "embedded": in_process,
        "http": http,
        "embedded_profile_top": top,
        "target_api_cpu_ms_per_order": 1.0,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=3000, help="orders in each measurement")
    parser.add_argument("--concurrency", type=int, default=16, help="requests at a time")
    args = parser.parse_args()
    results = asyncio.run(run(args.orders, args.concurrency))
    print(f"results: {write_results('request_cpu', results)}")


if __name__ == "__main__":
    main()
