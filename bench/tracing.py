"""Tracing's cost: the write path and the relay side by side with tracing off, on at 1 % and
on at 100 % of new traces, the spans exported over OTLP/gRPC to the collector of
``scripts/services.sh`` (``otelcol``).

1. Write path: ``place_order`` with an idempotency key (``bench.write_path``'s order mix and
   concurrency), orders/s. Each round runs the three variants in a rotated order, each with
   tracing started as it says and stopped (its spans flushed) after it.
2. Relay: a backlog of order events drained into the memory sink, events/s. Off, the events
   carry no trace; on, each carries a ``traceparent`` whose sampled flag is set for the
   variant's share (as rows written with tracing on at that ratio), and the relay traces at
   that ratio. Each round drains one backlog per variant, in a rotated order.

    .venv/bin/python -m bench.tracing [--seconds 10] [--rounds 3] [--backlog 30000]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
import uuid
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

from adapters.memory import MemorySink
from bench.common import scratch_gateway, server_runs_of, synthesize_order_events, write_results
from bench.write_path import measure, seed
from gateway import Gateway, PlaceOrderRequest
from gateway.configuration.settings import RelaySettings, TelemetrySettings
from gateway.relay import Relay
from gateway.telemetry.tracing import Role, start_tracing, stop_tracing
from support.servers import server_url

VARIANTS: dict[str, float | None] = {"off": None, "1%": 0.01, "100%": 1.0}
"""Each variant's sampling ratio (None: tracing off)."""
RELAY_SETTINGS = RelaySettings(batch_size=500, linger_ms=5, poll_interval_seconds=1.0)
KEEP_ONE_ORDER_EVENT = (
    "DELETE FROM outbox WHERE id <> (SELECT min(id) FROM outbox WHERE event_type = 'order.placed')"
)


def telemetry(ratio: float | None, endpoint: str) -> TelemetrySettings:
    if ratio is None:
        return TelemetrySettings()
    return TelemetrySettings.model_validate(
        {"enabled": True, "endpoint": endpoint, "sampling_ratio": ratio, "service_name": "bench"}
    )


def rotated(round_number: int) -> list[str]:
    """The variants in this round's order: each goes first, second and last in turn."""
    names = list(VARIANTS)
    shift = round_number % len(names)
    return names[shift:] + names[:shift]


async def traced_rate(
    ratio: float | None, endpoint: str, role: Role, measured: Callable[[], Awaitable[float]]
) -> float:
    """``measured()``'s rate with tracing as ``ratio`` says, its spans flushed afterwards
    (the flush is not timed)."""
    start_tracing(telemetry(ratio, endpoint), role)
    try:
        rate = await measured()
    finally:
        stop_tracing()
    return rate


async def write_path(
    gateway: Gateway,
    requests: list[PlaceOrderRequest],
    endpoint: str,
    seconds: float,
    rounds: int,
    concurrency: int,
) -> dict[str, list[float]]:
    async def place(request: PlaceOrderRequest) -> None:
        await gateway.place_order(request, idempotency_key=str(uuid.uuid4()))

    for ratio in VARIANTS.values():  # warm-up: pools, caches, plans, the exporter's channel
        await traced_rate(ratio, endpoint, "api", partial(measure, place, requests, concurrency, 2))
    rates: dict[str, list[float]] = {name: [] for name in VARIANTS}
    for round_number in range(1, rounds + 1):
        for name in rotated(round_number):
            await gateway.pool.execute("CHECKPOINT")
            rates[name].append(
                await traced_rate(
                    VARIANTS[name],
                    endpoint,
                    "api",
                    partial(measure, place, requests, concurrency, seconds),
                )
            )
        print(
            f"write path, round {round_number}: "
            + "   ".join(f"{name} {rates[name][-1]:6.0f} orders/s" for name in VARIANTS)
        )
    return rates


async def drain(gateway: Gateway, backlog: int, ratio: float | None) -> float:
    """Events/s of a relay draining ``backlog`` events (traced as ``ratio`` says) into the
    memory sink; the outbox is emptied but for one event before and after (the payload that
    the backlog's events copy)."""
    await gateway.pool.execute(KEEP_ONE_ORDER_EVENT)
    await synthesize_order_events(gateway, backlog, per_transaction=100, traced_share=ratio)
    sink = MemorySink(f"bench_{uuid.uuid4().hex[:8]}")
    runs = await server_runs_of(gateway.pool)
    relay = Relay(gateway.pool, gateway.settings.postgres, [sink], RELAY_SETTINGS, server_runs=runs)
    started = time.perf_counter()
    await relay.run(until_idle=True)
    seconds = time.perf_counter() - started
    assert len(sink.deliveries) >= backlog
    await gateway.pool.execute(KEEP_ONE_ORDER_EVENT)
    return backlog / seconds


async def relay(
    gateway: Gateway, endpoint: str, backlog: int, rounds: int
) -> dict[str, list[float]]:
    rates: dict[str, list[float]] = {name: [] for name in VARIANTS}
    for round_number in range(1, rounds + 1):
        for name in rotated(round_number):
            ratio = VARIANTS[name]
            rates[name].append(
                await traced_rate(ratio, endpoint, "relay", partial(drain, gateway, backlog, ratio))
            )
        print(
            f"relay, round {round_number}: "
            + "   ".join(f"{name} {rates[name][-1]:7.0f} events/s" for name in VARIANTS)
        )
    return rates


def summary(rates: dict[str, list[float]], unit: str) -> dict[str, Any]:
    medians = {name: statistics.median(values) for name, values in rates.items()}
    return {
        f"{unit}_per_second": {
            name: [round(r, 1) for r in values] for name, values in rates.items()
        },
        "median": {name: round(value, 1) for name, value in medians.items()},
        "ratio_to_off": {name: round(value / medians["off"], 3) for name, value in medians.items()},
    }


async def run(seconds: float, rounds: int, concurrency: int, backlog: int) -> dict[str, Any]:
    endpoint = server_url("otelcol")
    async with scratch_gateway(pool_size=concurrency) as gateway:
        requests = await seed(gateway, customers=64, products=500)
        writes = await write_path(gateway, requests, endpoint, seconds, rounds, concurrency)
        drains = await relay(gateway, endpoint, backlog, rounds)
    return {
        "variants": {name: ratio for name, ratio in VARIANTS.items()},
        "exporter": "OTLP/gRPC to the collector of scripts/services.sh, batched",
        "rounds": rounds,
        "write_path": {
            "concurrency": concurrency,
            "seconds_per_round": seconds,
            **summary(writes, "orders"),
        },
        "relay": {"backlog": backlog, **summary(drains, "events")},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="length of a write round")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of each variant")
    parser.add_argument("--concurrency", type=int, default=32, help="concurrent connections")
    parser.add_argument("--backlog", type=int, default=30_000, help="events a relay drains")
    args = parser.parse_args()
    results = asyncio.run(run(args.seconds, args.rounds, args.concurrency, args.backlog))
    path = write_results("tracing", results)
    for part, unit in (("write_path", "orders/s"), ("relay", "events/s")):
        medians, ratios = results[part]["median"], results[part]["ratio_to_off"]
        print(
            f"{part} median: "
            + ", ".join(
                f"{name} {medians[name]:.0f} {unit} ({ratios[name]:.3f})" for name in VARIANTS
            )
        )
    print(f"written to {path}")


if __name__ == "__main__":
    main()
