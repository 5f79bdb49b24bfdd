"""Sinks: events/s the relay delivers into each real store vs. the store's raw bulk-write rate.

For each store the same events (order.placed, one per order, with a real order's payload) are
written twice, each time into a fresh namespace:

- raw: projected by the adapter's own projection and written with the store's client and its
  plain bulk write, in requests of the relay's batch size, with nothing else: MongoDB
  ``insert_many`` (unordered, in requests of the sink's ``bulk_size``), a Redis pipeline of
  ``SET ... EX``, an Elasticsearch ``_bulk`` of ``index`` operations, one InfluxDB ``/write``,
  and for Kafka the batch's records sent by the sink's client (librdkafka's producer, driven
  from asyncio as the sink drives it, with the sink's settings: idempotent, ``acks=all``,
  lz4, 5 ms linger) and their acknowledgements awaited;
- relay: read from the outbox by the relay and applied through the adapter (version guards,
  per-event outcomes, positions saved in PostgreSQL), from the beginning until idle, timed
  from the moment the relay holds its leases.

Rounds alternate raw and relay on the same data; the medians are reported. The process tunes
its garbage collector as ``fanout relay`` does, for raw and relay alike.

    .venv/bin/python -m bench.sinks [--events 20000] [--mongodb-events N] [--rounds 5]
                                    [--sinks redis kafka ...]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import redis.asyncio as aioredis
from elasticsearch import AsyncElasticsearch
from pymongo import AsyncMongoClient

from adapters.base import EventEnvelope, Sink
from adapters.elasticsearch import ElasticsearchSink
from adapters.influx import InfluxSink
from adapters.kafka import KafkaSink, record_for
from adapters.kafka_producer import DeliveringProducer
from adapters.mongo import MongoSink
from adapters.redis import RedisSink
from bench.common import scratch_gateway, server_runs_of, synthesize_order_events, write_results
from bench.write_path import seed
from gateway import Gateway
from gateway.configuration.settings import RelaySettings
from gateway.postgres.outbox import envelope_of
from gateway.relay import Relay, collector
from gateway.relay.tables import sink_totals
from support.servers import server_url
from support.stores import STORES, drop_namespace, make_sink

KINDS = (*STORES, "kafka")
RELAY_SETTINGS = RelaySettings(batch_size=500, linger_ms=5, poll_interval_seconds=1.0)
TARGET_RATIO = 0.7

Writer = Callable[[list[Any]], Awaitable[None]]
Closer = Callable[[], Awaitable[None]]


async def outbox_events(gateway: Gateway, count: int) -> list[EventEnvelope]:
    rows = await gateway.pool.fetch("SELECT * FROM outbox ORDER BY id LIMIT $1", count)
    return [envelope_of(row, row["id"]) for row in rows]


def mongo_writer(sink: MongoSink) -> tuple[Writer, Closer]:
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(server_url("mongodb"))
    collection = client[sink.collection.database.name][sink.collection.name]

    async def write(documents: list[Any]) -> None:
        for start in range(0, len(documents), sink.bulk_size):
            chunk = documents[start : start + sink.bulk_size]
            await collection.insert_many(
                [{"_id": d["order_id"], **d} for d in chunk], ordered=False
            )

    return write, client.close


def redis_writer(sink: RedisSink) -> tuple[Writer, Closer]:
    client = aioredis.Redis.from_url(server_url("redis"))

    async def write(summaries: list[Any]) -> None:
        pipeline = client.pipeline(transaction=False)
        for summary in summaries:
            key = sink.key_prefix + summary["order_id"]
            pipeline.set(key, json.dumps(summary), ex=sink.ttl_seconds)
        await pipeline.execute()

    return write, client.aclose


def elasticsearch_writer(sink: ElasticsearchSink) -> tuple[Writer, Closer]:
    client = AsyncElasticsearch(server_url("elasticsearch"))

    async def write(documents: list[Any]) -> None:
        operations: list[dict[str, Any]] = []
        for document in documents:
            operations.append({"index": {"_index": sink.index, "_id": document["order_id"]}})
            operations.append(document)
        response = await client.bulk(operations=operations)
        if response.body["errors"]:
            raise RuntimeError(f"raw bulk write failed: {response.body['items'][:1]}")

    return write, client.close


def influx_writer(sink: InfluxSink) -> tuple[Writer, Closer]:
    client = httpx.AsyncClient(base_url=server_url("influxdb"))

    async def write(lines: list[Any]) -> None:
        params = {"db": sink.database, "precision": "ns"}
        response = await client.post("/write", params=params, content="\n".join(lines))
        response.raise_for_status()

    return write, client.aclose


def kafka_writer(sink: KafkaSink) -> tuple[Writer, Closer]:
    producer: DeliveringProducer | None = None

    async def write(records: list[Any]) -> None:
        nonlocal producer
        if producer is None:
            producer = DeliveringProducer(sink.producer_config)
        acknowledgements = [
            producer.send(
                r.topic, r.value, key=r.key, headers=r.headers, timestamp_ms=r.timestamp_ms
            )
            for r in records
        ]
        failures = [error for error in await asyncio.gather(*acknowledgements) if error]
        if failures:
            raise RuntimeError(f"raw send failed: {failures[0]}")

    async def close() -> None:
        if producer is not None:
            await producer.flush(10)
            await producer.close(10)

    return write, close


def raw_writer(sink: Sink) -> tuple[Writer, Closer]:
    """The store's plain bulk write of projected documents, and how to close its client."""
    match sink:
        case KafkaSink():
            return kafka_writer(sink)
        case MongoSink():
            return mongo_writer(sink)
        case RedisSink():
            return redis_writer(sink)
        case ElasticsearchSink():
            return elasticsearch_writer(sink)
        case InfluxSink():
            return influx_writer(sink)
    raise TypeError(f"no raw writer for {type(sink).__name__}")


def projected(sink: Sink, event: EventEnvelope) -> Any:
    """What the raw writer writes of ``event``: the sink's projection, or its record."""
    if isinstance(sink, KafkaSink):
        return record_for(event, sink.topic_for(event.aggregate_type) or "")
    return sink.projections.project(event)  # type: ignore[attr-defined]


async def raw_rate(kind: str, events: list[EventEnvelope], tag: str) -> tuple[float, float]:
    """Events/s of the plain bulk write (the sink only prepares the namespace and projects),
    and this process's CPU milliseconds per event (every thread, a client's own included)."""
    sink = make_sink(kind, tag)
    await sink.start()
    write, close = raw_writer(sink)
    try:
        started, cpu_started = time.perf_counter(), time.process_time()
        for start in range(0, len(events), RELAY_SETTINGS.batch_size):
            chunk = events[start : start + RELAY_SETTINGS.batch_size]
            await write([projected(sink, event) for event in chunk])
        elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu_started
        return len(events) / elapsed, 1000 * cpu / len(events)
    finally:
        await close()
        await drop_namespace(sink)
        await sink.close()


async def relay_until_idle(
    gateway: Gateway, kinds: list[str], count: int, tag: str, **options: Any
) -> tuple[float, float]:
    """Seconds (wall, CPU of this process) a relay takes to deliver the outbox's ``count``
    events, from the beginning until idle, to a fresh sink of each of ``kinds``.

    The clock starts once the relay holds its leases, as a running relay does: its start-up
    (preparing the sinks, registering, claiming partitions) is left out, as the raw writer's
    preparation is.
    """
    sinks = [make_sink(kind, tag, name=f"{kind}_{tag}") for kind in kinds]
    for sink in sinks:
        await sink.start()
    runs = await server_runs_of(gateway.pool)
    relay = Relay(
        gateway.pool, gateway.settings.postgres, sinks, RELAY_SETTINGS, server_runs=runs, **options
    )
    try:
        running = asyncio.create_task(relay.run(until_idle=True))
        ready = asyncio.create_task(relay.ready.wait())
        await asyncio.wait({running, ready}, return_when=asyncio.FIRST_COMPLETED)
        started, cpu_started = time.perf_counter(), time.process_time()
        ready.cancel()
        await running
        elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu_started
        totals = {t.sink: t for t in await sink_totals(gateway.pool)}
        for sink in sinks:
            if totals[sink.name].delivered != count or totals[sink.name].dead_lettered:
                raise RuntimeError(f"the relay did not deliver all {count} events: {totals}")
        return elapsed, cpu
    finally:
        for sink in sinks:
            await drop_namespace(sink)
            await sink.close()


async def relay_rate(gateway: Gateway, kind: str, count: int, tag: str) -> tuple[float, float]:
    """Events/s the relay delivers from the outbox into the sink, from the beginning, and this
    process's CPU milliseconds per event."""
    elapsed, cpu = await relay_until_idle(gateway, [kind], count, tag)
    return count / elapsed, 1000 * cpu / count


async def order_events_only(gateway: Gateway, count: int) -> None:
    """Fill the empty outbox with exactly ``count`` order.placed events of a real order's
    payload."""
    requests = await seed(gateway, customers=4, products=20)
    await gateway.place_order(requests[0])
    seeded = await gateway.pool.fetchval("SELECT max(id) FROM outbox")
    await synthesize_order_events(gateway, count, per_transaction=1_000)
    await gateway.pool.execute("DELETE FROM outbox WHERE id <= $1", seeded)


async def run(kinds: list[str], events: int, mongodb_events: int, rounds: int) -> dict[str, Any]:
    results: dict[str, Any] = {}
    for kind in kinds:
        count = mongodb_events if kind == "mongodb" else events
        raw: list[float] = []
        relayed: list[float] = []
        raw_cpu: list[float] = []
        relay_cpu: list[float] = []
        async with scratch_gateway(pool_size=8) as gateway:
            await order_events_only(gateway, count)
            envelopes = await outbox_events(gateway, count)
            for round_number in range(rounds):
                rate, cpu = await raw_rate(kind, envelopes, f"raw{round_number}")
                raw.append(rate)
                raw_cpu.append(cpu)
                rate, cpu = await relay_rate(gateway, kind, count, f"relay{round_number}")
                relayed.append(rate)
                relay_cpu.append(cpu)
        raw_median, relay_median = statistics.median(raw), statistics.median(relayed)
        results[kind] = {
            "events": count,
            "raw_events_per_second": round(raw_median),
            "relay_events_per_second": round(relay_median),
            "ratio": round(relay_median / raw_median, 2),
            "meets_target": relay_median / raw_median >= TARGET_RATIO,
            "cpu_ms_per_event": {
                "raw": round(statistics.median(raw_cpu), 4),
                "relay": round(statistics.median(relay_cpu), 4),
            },
            "rounds": {"raw": [round(r) for r in raw], "relay": [round(r) for r in relayed]},
        }
        row = results[kind]
        print(
            f"{kind:14} {count:6} events: raw {row['raw_events_per_second']:7}/s"
            f"  relay {row['relay_events_per_second']:7}/s  ratio {row['ratio']}"
            f"  CPU/event {row['cpu_ms_per_event']} ms",
            flush=True,
        )
    return {
        "settings": RELAY_SETTINGS.model_dump(),
        "rounds": rounds,
        "sinks": results,
        "target_ratio": TARGET_RATIO,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=20_000, help="events per store")
    parser.add_argument(
        "--mongodb-events", type=int, default=None, help="events for MongoDB (default: --events)"
    )
    parser.add_argument("--sinks", nargs="+", choices=KINDS, default=list(KINDS))
    parser.add_argument("--rounds", type=int, default=5, help="alternating rounds; medians count")
    parser.add_argument(
        "--results", default="sinks", help="results file name under bench/results/ (no .json)"
    )
    args = parser.parse_args()
    collector.tune_for_relay()
    mongodb_events = args.mongodb_events if args.mongodb_events is not None else args.events
    results = asyncio.run(run(args.sinks, args.events, mongodb_events, args.rounds))
    path = write_results(args.results, results)
    print(f"written to {path}")


if __name__ == "__main__":
    main()
