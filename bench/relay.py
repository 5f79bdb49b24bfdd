"""Relay: drain rate and commit-to-applied lag, side by side with a naive relay.

The naive relay is what an outbox poller often starts as: ``WHERE id > last ORDER BY id LIMIT
n``, one event applied at a time, the cursor saved after each event, polling every 50 ms.

1. Drain: a 50,000-event backlog into the no-op memory sink; events/s of each.
2. Lag: orders placed open-loop at a fixed rate (default 1,000/s for 30 s, spread over writer
   processes) while the relay runs in a process of its own; from each order's commit (as
   PostgreSQL timestamps it: ``track_commit_timestamp``) to its application by the sink,
   p50/p99. Events the naive relay never delivers (skipped by its id cursor) are counted.

Every process tunes its garbage collector as ``fanout relay`` does, for both relays alike.

    .venv/bin/python -m bench.relay [--backlog 50000] [--rate 1000] [--seconds 30] [--writers 2]
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import random
import statistics
import time
from collections.abc import Sequence
from multiprocessing.connection import Connection as Pipe
from multiprocessing.synchronize import Event as StopFlag
from typing import Any

import asyncpg

from adapters.base import Delivery, EventEnvelope
from adapters.memory import MemorySink
from bench.common import scratch_gateway, server_runs_of, synthesize_order_events, write_results
from bench.write_path import seed
from gateway import Gateway, PlaceOrderRequest, Settings
from gateway.configuration.settings import PostgresSettings, RelaySettings
from gateway.postgres.database import create_pool
from gateway.postgres.outbox import envelope_of
from gateway.postgres.server_runs import ServerRuns
from gateway.relay import Relay, collector

RELAY_SETTINGS = RelaySettings(batch_size=500, linger_ms=5, poll_interval_seconds=1.0)
NAIVE_POLL_SECONDS = 0.05
NAIVE_BATCH = 500


class TimingSink(MemorySink):
    """The memory sink, noting when each order's first event was applied (wall clock)."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.applied_at: dict[str, float] = {}

    async def apply(self, batch: Sequence[EventEnvelope]) -> list[Delivery]:
        results = await super().apply(batch)
        now = time.time()
        for event in batch:
            if event.version == 1:
                self.applied_at.setdefault(event.aggregate_id, now)
        return results


class NaiveRelay:
    """``id > last`` in id order, one event at a time, cursor saved after each event."""

    def __init__(self, pool: asyncpg.Pool, sink: MemorySink, name: str) -> None:
        self.pool = pool
        self.sink = sink
        self.name = name

    async def start_at_end(self) -> None:
        async with self.pool.acquire() as connection:
            await connection.execute(
                "CREATE TABLE IF NOT EXISTS naive_cursor (name text PRIMARY KEY, last_id bigint)"
            )
            await connection.execute(
                "INSERT INTO naive_cursor VALUES ($1, (SELECT coalesce(max(id), 0) FROM outbox))"
                " ON CONFLICT (name) DO UPDATE SET last_id = EXCLUDED.last_id",
                self.name,
            )

    async def start_at_beginning(self) -> None:
        async with self.pool.acquire() as connection:
            await connection.execute(
                "CREATE TABLE IF NOT EXISTS naive_cursor (name text PRIMARY KEY, last_id bigint)"
            )
            await connection.execute(
                "INSERT INTO naive_cursor VALUES ($1, 0) ON CONFLICT (name) DO NOTHING", self.name
            )

    async def step(self) -> int:
        """One poll: apply what it finds; return how many events it applied."""
        async with self.pool.acquire() as connection:
            last = await connection.fetchval(
                "SELECT last_id FROM naive_cursor WHERE name = $1", self.name
            )
            rows = await connection.fetch(
                "SELECT * FROM outbox WHERE id > $1 ORDER BY id LIMIT $2", last, NAIVE_BATCH
            )
            for row in rows:
                await self.sink.apply([envelope_of(row, row["id"])])
                await connection.execute(
                    "UPDATE naive_cursor SET last_id = $2 WHERE name = $1", self.name, row["id"]
                )
        return len(rows)

    async def drain(self) -> None:
        while await self.step():
            pass

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            if not await self.step():
                await asyncio.sleep(NAIVE_POLL_SECONDS)


async def drain_rates(gateway: Gateway, backlog: int) -> dict[str, float]:
    await synthesize_order_events(gateway, backlog, per_transaction=100)
    total = await gateway.pool.fetchval("SELECT count(*) FROM outbox")
    ours = MemorySink("bench_drain")
    runs = await server_runs_of(gateway.pool)
    relay = Relay(gateway.pool, gateway.settings.postgres, [ours], RELAY_SETTINGS, server_runs=runs)
    started = time.perf_counter()
    await relay.run(until_idle=True)
    relay_seconds = time.perf_counter() - started

    naive = NaiveRelay(gateway.pool, MemorySink("naive_drain"), "naive_drain")
    await naive.start_at_beginning()
    started = time.perf_counter()
    await naive.drain()
    naive_seconds = time.perf_counter() - started
    assert len(ours.deliveries) >= total and len(naive.sink.deliveries) == total
    return {
        "events": total,
        "relay_events_per_second": round(total / relay_seconds, 1),
        "naive_events_per_second": round(total / naive_seconds, 1),
        "ratio": round(naive_seconds / relay_seconds, 2),
    }


def _relay_process(url: str, variant: str, stop: StopFlag, results: Pipe) -> None:
    collector.tune_for_relay()
    asyncio.run(_relay_main(url, variant, stop, results))


async def _relay_main(url: str, variant: str, stop: StopFlag, results: Pipe) -> None:
    postgres = PostgresSettings(url=url, pool_min_size=2, pool_max_size=8)
    runs = ServerRuns()
    pool = await create_pool(postgres, on_connect=runs.observe)
    sink = TimingSink(f"lag_{variant}")
    stopped = asyncio.Event()
    if variant == "relay":
        relay = Relay(
            pool,
            postgres,
            [sink],
            RELAY_SETTINGS,
            start_from={sink.name: "now"},
            server_runs=runs,
        )
        runner = asyncio.create_task(relay.run())
        await relay.ready.wait()  # registered and holding its partitions before the load
    else:
        naive = NaiveRelay(pool, sink, sink.name)
        await naive.start_at_end()
        runner = asyncio.create_task(naive.run(stopped))
    results.send("ready")
    await asyncio.to_thread(stop.wait)
    if variant == "relay":
        relay.stop()
    stopped.set()
    await runner
    await pool.close()
    results.send(sink.applied_at)


def _writer_process(url: str, rate: float, seconds: float, results: Pipe) -> None:
    results.send(asyncio.run(_writer_main(url, rate, seconds)))


async def _writer_main(url: str, rate: float, seconds: float) -> tuple[int, float]:
    """Place orders open-loop at ``rate``/s: each is started on schedule, done or not."""
    settings = Settings(postgres=PostgresSettings(url=url, pool_min_size=16, pool_max_size=16))
    async with await Gateway.connect(settings) as gateway:
        requests = await order_requests(gateway)
        tasks: list[asyncio.Task[Any]] = []
        started = time.perf_counter()
        for index in range(int(rate * seconds)):
            delay = started + index / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(gateway.place_order(random.choice(requests))))
        await asyncio.gather(*tasks)
        return len(tasks), time.perf_counter() - started


async def order_requests(gateway: Gateway) -> list[PlaceOrderRequest]:
    """Requests over the customers and products :func:`bench.write_path.seed` created."""
    people = await gateway.pool.fetch(
        "SELECT c.id, min(a.id::text) FILTER (WHERE a.address_type = 'billing') AS billing,"
        " min(a.id::text) FILTER (WHERE a.address_type = 'shipping') AS shipping"
        " FROM customers c JOIN addresses a ON a.customer_id = c.id GROUP BY c.id"
    )
    products = [r["id"] for r in await gateway.pool.fetch("SELECT id FROM products")]
    return [
        PlaceOrderRequest(
            customer_id=person["id"],
            billing_address_id=person["billing"],
            shipping_address_id=person["shipping"],
            items=[{"product_id": p, "quantity": 1} for p in random.sample(products, 2)],
        )
        for person in people
        for _ in range(10)
    ]


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


async def lag(
    gateway: Gateway, url: str, variant: str, rate: float, seconds: float, writers: int
) -> dict[str, Any]:
    context = multiprocessing.get_context("spawn")
    stop = context.Event()
    receiving, sending = context.Pipe(duplex=False)
    relay_process = context.Process(target=_relay_process, args=(url, variant, stop, sending))
    relay_process.start()
    sending.close()  # only the child writes: if it dies, recv raises EOFError instead of hanging
    assert await asyncio.to_thread(receiving.recv) == "ready"
    first_id = await gateway.pool.fetchval("SELECT coalesce(max(id), 0) FROM outbox")
    pipes, processes = [], []
    for _ in range(writers):
        writer_receiving, writer_sending = context.Pipe(duplex=False)
        process = context.Process(
            target=_writer_process, args=(url, rate / writers, seconds, writer_sending)
        )
        process.start()
        writer_sending.close()
        pipes.append(writer_receiving)
        processes.append(process)
    outcomes = [await asyncio.to_thread(pipe.recv) for pipe in pipes]
    for process in processes:
        await asyncio.to_thread(process.join)
    achieved = sum(count for count, _ in outcomes) / max(elapsed for _, elapsed in outcomes)
    await asyncio.sleep(3)  # let the relay apply what is still in flight before it stops
    stop.set()
    applied: dict[str, float] = await asyncio.to_thread(receiving.recv)
    await asyncio.to_thread(relay_process.join)
    commits = await gateway.pool.fetch(
        "SELECT aggregate_id, extract(epoch FROM pg_xact_commit_timestamp(xmin))::float8 AS at"
        " FROM outbox WHERE id > $1 AND event_type = 'order.placed'",
        first_id,
    )
    lags = [applied[r["aggregate_id"]] - r["at"] for r in commits if r["aggregate_id"] in applied]
    return {
        "offered_rate": rate,
        "achieved_rate": round(achieved, 1),
        "orders": len(commits),
        "delivered": len(lags),
        "never_delivered": len(commits) - len(lags),
        "lag_p50_ms": round(1000 * percentile(lags, 0.50), 1),
        "lag_p99_ms": round(1000 * percentile(lags, 0.99), 1),
        "lag_max_ms": round(1000 * max(lags), 1),
        "lag_mean_ms": round(1000 * statistics.fmean(lags), 1),
    }


async def run(backlog: int, rate: float, seconds: float, writers: int) -> dict[str, Any]:
    async with scratch_gateway(pool_size=32) as gateway:
        if await gateway.pool.fetchval("SHOW track_commit_timestamp") != "on":
            raise SystemExit("the lag benchmark needs track_commit_timestamp = on")
        requests = await seed(gateway, customers=64, products=500)
        await gateway.place_order(requests[0])
        drain = await drain_rates(gateway, backlog)
        print(
            f"drain {drain['events']} events: relay {drain['relay_events_per_second']:.0f}/s, "
            f"naive {drain['naive_events_per_second']:.0f}/s ({drain['ratio']}x)"
        )
        await gateway.pool.execute("DELETE FROM outbox")
        url = gateway.settings.postgres.url.get_secret_value()
        lags = {}
        for variant in ("relay", "naive"):
            lags[variant] = await lag(gateway, url, variant, rate, seconds, writers)
            figures = lags[variant]
            print(
                f"lag {variant:5}: offered {rate:.0f}/s achieved {figures['achieved_rate']:.0f}/s"
                f"  p50 {figures['lag_p50_ms']} ms  p99 {figures['lag_p99_ms']} ms"
                f"  max {figures['lag_max_ms']} ms  never delivered {figures['never_delivered']}"
            )
    return {
        "settings": RELAY_SETTINGS.model_dump(),
        "drain": drain,
        "lag": lags,
        "targets": {"drain_events_per_second": 10_000, "lag_p99_ms": 250},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backlog", type=int, default=50_000, help="events in the drain test")
    parser.add_argument("--rate", type=float, default=1_000, help="offered orders/s for lag")
    parser.add_argument("--seconds", type=float, default=30, help="length of the lag test")
    parser.add_argument("--writers", type=int, default=2, help="processes placing orders")
    args = parser.parse_args()
    collector.tune_for_relay()  # as ``fanout relay`` does; the naive relay runs alike
    results = asyncio.run(run(args.backlog, args.rate, args.seconds, args.writers))
    path = write_results("relay", results)
    print(f"written to {path}")


if __name__ == "__main__":
    main()
