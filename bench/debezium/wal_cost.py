"""One round of the write path alone (no relay): Gateway.place_order closed loop, CONCURRENCY at
a time, for SECONDS, on the database compare.py seeded; prints orders/s and WAL bytes per order
as a JSON line. Run by wal_level_cost.sh under wal_level replica and logical in turn."""

import asyncio
import json
import os
import random
import sys
import time

sys.path.insert(0, os.getcwd())

from bench.relay import order_requests
from gateway import Gateway, Settings
from gateway.configuration.settings import PostgresSettings


async def main(url: str, seconds: float, concurrency: int) -> None:
    settings = Settings(
        postgres=PostgresSettings(url=url, pool_min_size=concurrency, pool_max_size=concurrency)
    )
    async with await Gateway.connect(settings) as gateway:
        requests = await order_requests(gateway)
        for _ in range(50):  # warm the pool and the caches
            await gateway.place_order(random.choice(requests))
        await gateway.pool.execute("CHECKPOINT")  # the same full-page images in every round
        level = await gateway.pool.fetchval("SHOW wal_level")
        lsn = await gateway.pool.fetchval("SELECT pg_current_wal_lsn()::text")
        done = 0
        latencies: list[float] = []
        end = time.perf_counter() + seconds

        async def worker() -> None:
            nonlocal done
            while time.perf_counter() < end:
                started = time.perf_counter()
                await gateway.place_order(random.choice(requests))
                latencies.append(time.perf_counter() - started)
                done += 1

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
        wal = await gateway.pool.fetchval(
            "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), $1::text::pg_lsn)", lsn
        )
        latencies.sort()
        print(
            json.dumps(
                {
                    "wal_level": level,
                    "orders": done,
                    "orders_per_second": round(done / elapsed, 1),
                    "wal_bytes_per_order": round(int(wal) / done),
                    "latency_p50_ms": round(1000 * latencies[len(latencies) // 2], 2),
                    "latency_p99_ms": round(1000 * latencies[int(0.99 * len(latencies))], 2),
                }
            ),
            flush=True,
        )


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], float(sys.argv[2]), int(sys.argv[3])))
