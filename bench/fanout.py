"""Fan-out: one relay delivering the same events to several real stores, with the outbox read
once for all of them (shared reads, the default) vs. once per sink.

The relay runs until every sink has all the events (order.placed, one per order, with a real
order's payload), each round into fresh namespaces. Rounds alternate the two ways on the same
data, each going first in every other round; the medians are reported, with the CPU time this
process spent per event. MongoDB is left out by default: FerretDB's rate (about 3,000 events/s
here) would set the time either way.

    .venv/bin/python -m bench.fanout [--events 20000] [--rounds 5]
                                     [--sinks redis elasticsearch influxdb]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
from typing import Any

from bench.common import scratch_gateway, write_results
from bench.sinks import RELAY_SETTINGS, order_events_only, relay_until_idle
from gateway import Gateway
from gateway.relay import collector
from support.stores import STORES

DEFAULT_SINKS = ["redis", "elasticsearch", "influxdb"]


async def fanout_round(
    gateway: Gateway, kinds: list[str], count: int, tag: str, *, shared: bool
) -> tuple[float, float]:
    """Events/s until every sink has everything, and CPU microseconds per event."""
    elapsed, cpu = await relay_until_idle(gateway, kinds, count, tag, shared_reads=shared)
    return count / elapsed, cpu / count * 1e6


async def run(kinds: list[str], events: int, rounds: int) -> dict[str, Any]:
    measured: dict[str, list[tuple[float, float]]] = {"shared": [], "per_sink": []}
    async with scratch_gateway(pool_size=2 * len(kinds) + 3) as gateway:
        await order_events_only(gateway, events)
        for number in range(rounds):
            # Each way goes first in every other round, so neither always meets a cold server.
            for way in sorted(measured, reverse=number % 2 == 1):
                tag = f"{way}{number}"
                measured[way].append(
                    await fanout_round(gateway, kinds, events, tag, shared=way == "shared")
                )
    summary: dict[str, dict[str, Any]] = {
        way: {
            "events_per_second": round(statistics.median(rate for rate, _ in results)),
            "cpu_microseconds_per_event": round(statistics.median(cpu for _, cpu in results), 1),
            "rounds": [round(rate) for rate, _ in results],
        }
        for way, results in measured.items()
    }
    shared, per_sink = summary["shared"], summary["per_sink"]
    ratio = round(shared["events_per_second"] / per_sink["events_per_second"], 2)
    for way, row in summary.items():
        print(
            f"{way:9} {len(kinds)} sinks, {events} events: {row['events_per_second']:6}/s"
            f"  {row['cpu_microseconds_per_event']:6} us CPU/event",
            flush=True,
        )
    print(f"shared / per sink: {ratio}", flush=True)
    return {
        "settings": RELAY_SETTINGS.model_dump(),
        "sinks": kinds,
        "events": events,
        "rounds": rounds,
        "results": summary,
        "shared_over_per_sink": ratio,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=20_000, help="events delivered to each")
    parser.add_argument("--sinks", nargs="+", choices=STORES, default=DEFAULT_SINKS)
    parser.add_argument("--rounds", type=int, default=5, help="alternating rounds; medians count")
    parser.add_argument(
        "--results", default="fanout", help="results file name under bench/results/ (no .json)"
    )
    args = parser.parse_args()
    collector.tune_for_relay()
    results = asyncio.run(run(args.sinks, args.events, args.rounds))
    path = write_results(args.results, results)
    print(f"written to {path}")


if __name__ == "__main__":
    main()
