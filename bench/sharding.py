"""Sharding: how many existing customers a new shard would take, with the gateway's weighted
rendezvous hashing vs the original sketch's ``md5(customer_id) % N``.

For 100,000 customer ids and N shards of equal weight (default 2 to 8), the share of customers
whose shard changes when shard N+1 is added, side by side with the ideal 1/(N+1) (what the
new shard should hold, and so the least that must move), and the time one placement takes.

    .venv/bin/python -m bench.sharding [--customers 100000] [--shards 2 3 4 8]
"""

from __future__ import annotations

import argparse
import random
import time
import uuid
from typing import Any

from bench.common import write_results
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


def run(customers: int, shard_counts: list[int]) -> dict[str, Any]:
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--shards", type=int, nargs="+", default=[2, 3, 4, 8])
    args = parser.parse_args()
    path = write_results("sharding", run(args.customers, args.shards))
    print(f"written to {path}")


if __name__ == "__main__":
    main()
