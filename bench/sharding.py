"""Sharding: how many existing customers a new shard would take, and orders/s with shards.

Movement: for 100,000 customer ids and N shards of equal weight (default 2 to 8), the share of
customers whose shard changes when shard N+1 is added with the gateway's weighted rendezvous
hashing vs the original sketch's ``md5(customer_id) % N``, side by side with the ideal 1/(N+1)
(what the new shard should hold, and so the least that must move), and the time one placement
takes.

Orders/s: ``place_order`` (with an idempotency key) in one database, in sharded mode with the
catalog and one shard, and with the catalog and two shards (on the three PostgreSQL servers of
``scripts/services.sh``), each at the same concurrency over the same order mix, in rotating
rounds. The first ratio is what the saga's extra round trips cost; the second what a second
shard gives on this machine, where every server shares the same cores.

    .venv/bin/python -m bench.sharding [--customers 100000] [--shards 2 3 4 8]
                                       [--seconds 8] [--rounds 3] [--concurrency 32]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

from bench.common import scratch_gateway, write_results
from bench.write_path import Placer, measure, seed
from gateway import Gateway, PlaceOrderRequest
from gateway.sharding.placement import (
    Placement,
    Shard,
    modulo_shard,
    moved_share,
    rendezvous_shard,
)


def customer_ids(count: int, seed: int = 1) -> list[str]:
    rng = random.Random(seed)
    return [str(uuid.UUID(int=rng.getrandbits(128), version=4)) for _ in range(count)]


def microseconds_per_placement(keys: list[str], shards: list[Shard], place: Placement) -> float:
    started = time.perf_counter()
    for key in keys:
        place(key, shards)
    return (time.perf_counter() - started) / len(keys) * 1e6


def movement(customers: int, shard_counts: list[int]) -> dict[str, Any]:
    keys = customer_ids(customers)
    rows = []
    for count in shard_counts:
        before = [Shard(f"shard-{n}") for n in range(count)]
        after = [*before, Shard(f"shard-{count}")]
        row = {
            "shards": f"{count} -> {count + 1}",
            "ideal": round(1 / (count + 1), 4),
            "rendezvous": round(moved_share(keys, before, after, rendezvous_shard), 4),
            "md5_modulo": round(moved_share(keys, before, after, modulo_shard), 4),
            "rendezvous_us_per_placement": round(
                microseconds_per_placement(keys[:20_000], after, rendezvous_shard), 2
            ),
        }
        rows.append(row)
        print(
            f"{row['shards']:>8} shards: moved  rendezvous {row['rendezvous']:.1%}"
            f"  md5 % N {row['md5_modulo']:.1%}  ideal {row['ideal']:.1%}"
            f"  ({row['rendezvous_us_per_placement']} µs per placement)",
            flush=True,
        )
    return {"customers": customers, "movement": rows}


VARIANTS = ("single_database", "catalog_and_one_shard", "catalog_and_two_shards")


@asynccontextmanager
async def sharded_gateway(shards: int, pool_size: int) -> AsyncIterator[Gateway]:
    """A gateway over fresh catalog and shard databases, with the first ``shards`` shards."""
    from support.sharding import sharded_databases

    async with sharded_databases() as found:
        chosen = dict(list(found.shards.items())[:shards])
        settings = found.settings(pool_min_size=pool_size, pool_max_size=pool_size)
        postgres = settings.postgres.model_copy(
            update={"shards": {n: s for n, s in settings.postgres.shards.items() if n in chosen}}
        )
        async with await Gateway.connect(settings.model_copy(update={"postgres": postgres})) as g:
            yield g


async def throughput(seconds: float, rounds: int, concurrency: int) -> dict[str, Any]:
    async with AsyncExitStack() as stack:
        gateways = {
            "single_database": await stack.enter_async_context(scratch_gateway(concurrency)),
            "catalog_and_one_shard": await stack.enter_async_context(
                sharded_gateway(1, concurrency)
            ),
            "catalog_and_two_shards": await stack.enter_async_context(
                sharded_gateway(2, concurrency)
            ),
        }
        placers: dict[str, Placer] = {}
        requests: dict[str, list[PlaceOrderRequest]] = {}
        for name, gateway in gateways.items():
            requests[name] = await seed(gateway, customers=64, products=500)

            async def place(request: PlaceOrderRequest, gateway: Gateway = gateway) -> None:
                await gateway.place_order(request, idempotency_key=str(uuid.uuid4()))

            placers[name] = place
            await measure(place, requests[name], concurrency, 2)  # warm-up
        rates: dict[str, list[float]] = {name: [] for name in VARIANTS}
        for round_number in range(rounds):
            # Rotated, so that no variant always runs first or last.
            order = VARIANTS[round_number % 3 :] + VARIANTS[: round_number % 3]
            for name in order:
                rate = await measure(placers[name], requests[name], concurrency, seconds)
                rates[name].append(rate)
            print(
                f"round {round_number + 1}: "
                + "   ".join(f"{name} {rates[name][-1]:6.0f}" for name in VARIANTS)
                + " orders/s",
                flush=True,
            )
    medians = {name: statistics.median(values) for name, values in rates.items()}
    return {
        "concurrency": concurrency,
        "seconds_per_round": seconds,
        "rounds": rounds,
        "orders_per_second": {name: [round(r, 1) for r in rates[name]] for name in VARIANTS},
        "medians": {name: round(value, 1) for name, value in medians.items()},
        "saga_vs_single_database": round(
            medians["catalog_and_one_shard"] / medians["single_database"], 3
        ),
        "two_shards_vs_one": round(
            medians["catalog_and_two_shards"] / medians["catalog_and_one_shard"], 3
        ),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--shards", type=int, nargs="+", default=[2, 3, 4, 8])
    parser.add_argument("--seconds", type=float, default=8.0, help="length of each round")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of each variant")
    parser.add_argument("--concurrency", type=int, default=32, help="concurrent requests")
    args = parser.parse_args()
    results = movement(args.customers, args.shards)
    results["throughput"] = asyncio.run(throughput(args.seconds, args.rounds, args.concurrency))
    path = write_results("sharding", results)
    medians = results["throughput"]["medians"]
    print(
        f"median orders/s: single database {medians['single_database']:.0f}, catalog + 1 shard "
        f"{medians['catalog_and_one_shard']:.0f} "
        f"({results['throughput']['saga_vs_single_database']:.2f}x), catalog + 2 shards "
        f"{medians['catalog_and_two_shards']:.0f} "
        f"({results['throughput']['two_shards_vs_one']:.2f}x of one shard); written to {path}"
    )


if __name__ == "__main__":
    main()
