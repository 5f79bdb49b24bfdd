"""``python -m bench.chaos``: run the chaos benchmark and record its report and chart."""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

from bench.chaos import __doc__ as DESCRIPTION
from bench.chaos.chart import draw
from bench.chaos.plan import FAULT_KINDS, ChaosPlan, FaultKind, fault_schedule
from bench.chaos.run import run_chaos, verdict
from bench.chaos.watch import ProcessEnded
from bench.common import RESULTS, write_results
from support.sharding import SHARD_SERVERS
from support.stores import STORES


def main() -> None:
    """Run the chaos benchmark and record its report and chart."""
    parser = argparse.ArgumentParser(
        prog="python -m bench.chaos", description=(DESCRIPTION or "").split("\n\n")[0]
    )
    parser.add_argument("--orders", type=int, default=100_000)
    parser.add_argument("--rate", type=float, default=80.0, help="orders per second")
    parser.add_argument("--repeats", type=int, default=3, help="times each fault runs")
    parser.add_argument("--outage", type=float, default=20.0, help="seconds a store is down")
    parser.add_argument("--stores", default=",".join(STORES))
    parser.add_argument("--name", default="chaos", help="results file name")
    parser.add_argument(
        "--sharded",
        action="store_true",
        help="sharded mode: the catalog on postgres, a shard on each of postgres-shard-a and -b",
    )
    parser.add_argument(
        "--reservation-seconds", type=float, default=2.0, help="sharded mode: reservations last"
    )
    parser.add_argument(
        "--cluster",
        choices=("async", "sync", "strict"),
        help="over the postgres-ha cluster (Patroni) in this replication mode; its faults move "
        "the primary (switchover, postmaster killed, primary cut off)",
    )
    parser.add_argument(
        "--partition-seconds", type=float, default=15.0, help="cluster: the primary is cut off"
    )
    parser.add_argument(
        "--move-seconds",
        type=float,
        default=12.0,
        help="sharded mode: how long each move-customers fault moves customers",
    )
    parser.add_argument(
        "--faults",
        type=fault_kinds,
        help="only the faults of these kinds, comma-separated (of "
        + ", ".join(FAULT_KINDS)
        + "); by default every kind of the mode",
    )
    arguments = parser.parse_args()
    plan = ChaosPlan(
        orders=arguments.orders,
        rate=arguments.rate,
        stores=tuple(arguments.stores.split(",")),
        store_outage_seconds=arguments.outage,
        shards=tuple(SHARD_SERVERS.values()) if arguments.sharded else (),
        reservation_seconds=arguments.reservation_seconds,
        shard_outage_seconds=arguments.outage,
        cluster=arguments.cluster is not None,
        cluster_mode=arguments.cluster or "sync",
        partition_seconds=arguments.partition_seconds,
        move_seconds=arguments.move_seconds,
    )
    plan = replace(plan, faults=fault_schedule(plan, arguments.repeats, arguments.faults))
    logs = Path(tempfile.mkdtemp(prefix="fanout-chaos-"))
    print(f"process logs in {logs}")
    try:
        report = asyncio.run(run_chaos(plan, logs))
    except ProcessEnded as ended:
        print(f"verdict: {ended}")
        sys.exit(1)
    broken = verdict(report)
    report["verdict"] = broken or "0 lost, 0 stale, 0 mismatched in every store"
    path = write_results(arguments.name, report)
    draw(report, RESULTS / f"{arguments.name}.png")
    print(
        f"{report['orders']} in {report['load_seconds']} s, drained in {report['drain_seconds']} s"
    )
    print(f"stores: {report['stores']}")
    print(f"requests: {report['requests']}; duplicates: {report['duplicates_absorbed']}")
    if "saga" in report:
        print(f"saga: {report['saga']['reservations']}")
    if "moves" in report:
        moves = {k: v for k, v in report["moves"].items() if k != "pauses_ms"}
        print(f"moves: {moves}")
    print(f"verdict: {report['verdict']}; written to {path}")
    sys.exit(1 if broken else 0)


def fault_kinds(text: str) -> frozenset[FaultKind]:
    """``--faults``: comma-separated fault kinds."""
    kinds = {kind.strip() for kind in text.split(",") if kind.strip()}
    unknown = sorted(kinds - set(FAULT_KINDS))
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown fault kinds: {', '.join(unknown)}")
    return frozenset(kind for kind in FAULT_KINDS if kind in kinds)


if __name__ == "__main__":
    main()
