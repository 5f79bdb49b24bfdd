"""Kafka clients: raw produce throughput and acknowledgement latency of aiokafka vs confluent-kafka.

Both clients publish the same records, built by the Kafka sink's ``record_for`` from order.placed
events with a real order's payload (key: the aggregate id; headers: the event's; value: the
payload as JSON), with the sink's producer settings: idempotent, ``acks=all``, lz4, 5 ms linger,
1 MiB requests, 10 s request timeout, keys partitioned by murmur2 (the Java client's and
aiokafka's partitioner; librdkafka's own default differs).

- aiokafka: ``AIOKafkaProducer.send`` for each record, its acknowledgement futures awaited;
- confluent-kafka (librdkafka): the classic ``Producer``, ``produce`` called from the event loop
  and delivery callbacks served by ``poll`` on a thread of its own. Its asyncio
  ``confluent_kafka.aio.AIOProducer`` cannot be used: it refuses records with headers.

Each round sends N records with each client (the order alternates between rounds) into a
fresh topic of 6 partitions, after a warm-up record per partition. Measured per client and
round: records/s from the first send to the last acknowledgement, each record's time from its
send call to its acknowledgement (p50, p99, max), and the process's CPU time per record (every
thread, librdkafka's included). The medians over the rounds and the ratios are printed and
written to ``bench/results/kafka_clients.json``.

    .venv/bin/python -m bench.kafka_clients [--events 50000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from adapters.kafka import Record, record_for
from adapters.kafka_url import bootstrap_servers
from bench.common import scratch_gateway, write_results
from bench.sinks import order_events_only, outbox_events
from support.servers import server_url

PARTITIONS = 6
LINGER_MS = 5
MAX_REQUEST_BYTES = 1_048_576
REQUEST_TIMEOUT_MS = 10_000
CLIENTS = ("aiokafka", "confluent-kafka")


@dataclass(frozen=True)
class RoundResult:
    """One client's sending of one round's records."""

    records_per_second: float
    latency_ms: dict[str, float]
    cpu_ms_per_record: float


def percentile(values: Sequence[float], share: float) -> float:
    """The value below which ``share`` of ``values`` lie (nearest rank)."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def round_result(sent: Sequence[float], acknowledged: Sequence[float], cpu_s: float) -> RoundResult:
    """The throughput, latency and CPU of a round from each record's send and acknowledgement
    times (seconds, same clock, same order) and the CPU time the process spent on it."""
    if not sent or len(sent) != len(acknowledged):
        raise ValueError("sent and acknowledged need one time per record, and at least one")
    latencies = [1000 * (ack - send) for send, ack in zip(sent, acknowledged, strict=True)]
    window = max(acknowledged) - min(sent)
    return RoundResult(
        records_per_second=round(len(sent) / window, 1),
        latency_ms={
            "p50": round(percentile(latencies, 0.50), 2),
            "p99": round(percentile(latencies, 0.99), 2),
            "max": round(max(latencies), 2),
        },
        cpu_ms_per_record=round(1000 * cpu_s / len(sent), 4),
    )


def medians(rounds: Sequence[RoundResult]) -> RoundResult:
    """Each figure's median over ``rounds``."""
    return RoundResult(
        records_per_second=statistics.median(r.records_per_second for r in rounds),
        latency_ms={
            q: round(statistics.median(r.latency_ms[q] for r in rounds), 2)
            for q in rounds[0].latency_ms
        },
        cpu_ms_per_record=statistics.median(r.cpu_ms_per_record for r in rounds),
    )


def ratios(numerator: RoundResult, denominator: RoundResult) -> dict[str, float]:
    """``numerator``'s figures over ``denominator``'s."""
    return {
        "records_per_second": round(
            numerator.records_per_second / denominator.records_per_second, 2
        ),
        "latency_p50": round(numerator.latency_ms["p50"] / denominator.latency_ms["p50"], 2),
        "latency_p99": round(numerator.latency_ms["p99"] / denominator.latency_ms["p99"], 2),
        "cpu_per_record": round(numerator.cpu_ms_per_record / denominator.cpu_ms_per_record, 2),
    }


def client_order(round_number: int) -> tuple[str, ...]:
    """Which client goes first in a round: they take turns."""
    return CLIENTS if round_number % 2 == 0 else CLIENTS[::-1]


async def create_topic(servers: list[str], topic: str) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=servers)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, PARTITIONS, 1)])
    finally:
        await admin.close()


async def aiokafka_round(servers: list[str], records: list[Record]) -> RoundResult:
    producer = AIOKafkaProducer(
        bootstrap_servers=servers,
        acks="all",
        enable_idempotence=True,
        compression_type="lz4",
        linger_ms=LINGER_MS,
        max_request_size=MAX_REQUEST_BYTES,
        request_timeout_ms=REQUEST_TIMEOUT_MS,
    )
    await producer.start()
    try:
        topic = records[0].topic
        warm_up = [await producer.send(topic, b"warm-up", partition=p) for p in range(PARTITIONS)]
        await asyncio.gather(*warm_up)
        sent = [0.0] * len(records)
        acknowledged = [0.0] * len(records)
        futures = []
        cpu_before = time.process_time()
        for index, r in enumerate(records):
            sent[index] = time.perf_counter()
            future = await producer.send(
                r.topic, r.value, key=r.key, headers=r.headers, timestamp_ms=r.timestamp_ms
            )
            future.add_done_callback(_stamp(acknowledged, index))
            futures.append(future)
        await asyncio.gather(*futures)
        cpu_s = time.process_time() - cpu_before
    finally:
        await producer.stop()
    return round_result(sent, acknowledged, cpu_s)


def _stamp(times: list[float], index: int) -> Callable[[Any], None]:
    def stamp(_: Any) -> None:
        times[index] = time.perf_counter()

    return stamp


async def confluent_round(servers: list[str], records: list[Record]) -> RoundResult:
    from confluent_kafka import KafkaError, Message, Producer

    producer = Producer(
        {
            "bootstrap.servers": ",".join(servers),
            "acks": "all",
            "enable.idempotence": True,
            "compression.type": "lz4",
            "linger.ms": LINGER_MS,
            "message.max.bytes": MAX_REQUEST_BYTES,
            "request.timeout.ms": REQUEST_TIMEOUT_MS,
            "partitioner": "murmur2_random",
        }
    )
    loop = asyncio.get_running_loop()
    done = asyncio.Event()
    warmed_up = asyncio.Event()
    acknowledged = [0.0] * len(records)
    errors: list[str] = []
    remaining = [len(records) + PARTITIONS]
    stop_polling = threading.Event()

    def delivered(index: int) -> Callable[[KafkaError | None, Message], None]:
        def callback(error: KafkaError | None, _: Message) -> None:
            if index >= 0:
                acknowledged[index] = time.perf_counter()
            if error is not None:
                errors.append(str(error))
            remaining[0] -= 1
            if remaining[0] == len(records):
                loop.call_soon_threadsafe(warmed_up.set)
            if remaining[0] == 0:
                loop.call_soon_threadsafe(done.set)

        return callback

    def serve_callbacks() -> None:
        while not stop_polling.is_set():
            producer.poll(0.05)

    poller = threading.Thread(target=serve_callbacks, daemon=True)
    poller.start()
    try:
        topic = records[0].topic
        for p in range(PARTITIONS):
            producer.produce(topic, b"warm-up", partition=p, on_delivery=delivered(-1))
        await asyncio.wait_for(warmed_up.wait(), timeout=60)
        headers: list[list[tuple[str, str | bytes | None]]] = [list(r.headers) for r in records]
        sent = [0.0] * len(records)
        cpu_before = time.process_time()
        for index, r in enumerate(records):
            sent[index] = time.perf_counter()
            producer.produce(
                r.topic,
                r.value,
                key=r.key,
                headers=headers[index],
                timestamp=r.timestamp_ms,
                on_delivery=delivered(index),
            )
            if index % 1000 == 999:
                await asyncio.sleep(0)  # let the loop run, as a sink sharing it would
        await asyncio.wait_for(done.wait(), timeout=120)
        cpu_s = time.process_time() - cpu_before
    finally:
        stop_polling.set()
        await asyncio.to_thread(poller.join)
        producer.flush(10)
    if errors:
        raise RuntimeError(f"confluent-kafka: {len(errors)} records failed, e.g. {errors[0]}")
    return round_result(sent, acknowledged, cpu_s)


Runner = Callable[[list[str], list[Record]], Awaitable[RoundResult]]
RUNNERS: dict[str, Runner] = {"aiokafka": aiokafka_round, "confluent-kafka": confluent_round}


async def run(events: int, rounds: int) -> dict[str, Any]:
    servers = bootstrap_servers(server_url("kafka"))
    async with scratch_gateway(pool_size=4) as gateway:
        await order_events_only(gateway, events)
        envelopes = await outbox_events(gateway, events)
    by_client: dict[str, list[RoundResult]] = {client: [] for client in CLIENTS}
    for round_number in range(rounds):
        for client in client_order(round_number):
            topic = f"bench.clients.{client}.{uuid.uuid4().hex[:10]}"
            await create_topic(servers, topic)
            records = [record_for(e, topic) for e in envelopes]
            result = await RUNNERS[client](servers, records)
            by_client[client].append(result)
            print(f"round {round_number + 1} {client:16} {result}", flush=True)
    summary = {client: medians(results) for client, results in by_client.items()}
    return {
        "settings": {
            "events": events,
            "rounds": rounds,
            "partitions": PARTITIONS,
            "producer": "idempotent, acks=all, lz4, linger 5 ms, 1 MiB requests",
            "confluent_kafka_producer": "Producer (classic), delivery callbacks polled on a thread",
            "versions": _versions(),
        },
        "medians": {client: vars(result) for client, result in summary.items()},
        "rounds": {client: [vars(r) for r in results] for client, results in by_client.items()},
        "ratios_confluent_over_aiokafka": ratios(summary["confluent-kafka"], summary["aiokafka"]),
    }


def _versions() -> dict[str, str]:
    import aiokafka
    import confluent_kafka

    return {
        "aiokafka": aiokafka.__version__,
        "confluent_kafka": str(confluent_kafka.__version__),
        "librdkafka": confluent_kafka.libversion()[0],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--events", type=int, default=50_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    results = asyncio.run(run(args.events, args.rounds))
    for client, figures in results["medians"].items():
        print(f"median {client:16} {figures}")
    print(f"confluent-kafka / aiokafka: {results['ratios_confluent_over_aiokafka']}")
    print(f"written to {write_results('kafka_clients', results)}")


if __name__ == "__main__":
    main()
