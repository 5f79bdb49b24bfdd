"""End to end: the highest rate each path sustains with flat latency, as a share of the write
path's own rate, measured in one session.

1. The reference: ``bench.write_path``'s gateway variant (``place_order`` alone, 32 at a
   time, no relay, no stores), orders/s.
2. For each path, embedded (``fanout loadtest`` calling the Gateway in its driver processes)
   and through HTTP (``fanout serve`` with ``--workers``), ``fanout loadtest`` runs open loop
   at rising rates with one relay process and every store of the profile; a rate is
   sustained when the run is clean and drained, nothing failed, the achieved rate kept up with
   the offered one, and the placement p99 and every store's commit-to-visible p99 stayed under
   the bound. The first rate that is not sustained ends the path's climb.

Everything (PostgreSQL, the stores, the relay, the API, the load) shares this machine.

    .venv/bin/python -m bench.end_to_end [--config config/loadtest.yaml] [--seconds 30]
        [--start 100] [--factor 1.25] [--workers 2]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from bench.common import write_results
from bench.write_path import run as run_write_path
from support.api_process import api_server, start_fanout, write_config

P99_BOUND_MS = 250.0
KEEP_UP = 0.97
"""The achieved rate must be at least this share of the offered one."""
TARGET_SHARE = 0.6
WARM_UP_SECONDS = 5.0
SAMPLE_EVERY = 3
"""Every third write's visibility is timed: at the rates of this machine, thousands of samples
per run, so that a p99 is not decided by a handful."""


@dataclass(frozen=True)
class Verdict:
    """Whether a run sustained its rate, and if not, why."""

    sustained: bool
    reasons: list[str]


def judge(report: dict[str, Any], bound_ms: float = P99_BOUND_MS) -> Verdict:
    """Whether a load test run held its rate with flat latency: clean and drained, no
    errors, the rate kept up, placement and every store's lag p99 under ``bound_ms``."""
    phase = report["phases"][0]
    reasons: list[str] = []
    if report["result"] != "clean" or not phase["drained"]:
        reasons.append("drift or not drained")
    if phase["errors"]:
        reasons.append(f"errors {phase['errors']}")
    if phase["achieved_rate"] < KEEP_UP * phase["offered_rate"]:
        reasons.append(f"achieved {phase['achieved_rate']} of {phase['offered_rate']}/s")
    placement = phase["latency_ms"]["place"]["p99"]
    if placement is None or placement >= bound_ms:
        reasons.append(f"placement p99 {placement} ms")
    for sink, figures in phase["sinks"].items():
        lag = figures.get("lag_ms", {}).get("p99")
        if lag is None or lag >= bound_ms:
            reasons.append(f"{sink} lag p99 {lag} ms")
    return Verdict(not reasons, reasons)


CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
ROLES = (
    ("driver_process", "load drivers"),
    (" loadtest", "load coordinator"),
    (" relay", "relay"),
    (" serve", "API"),
    ("ferretdb", "FerretDB"),
    ("postgres", "PostgreSQL"),
    ("elasticsearch", "Elasticsearch"),
    ("influxd", "InfluxDB"),
    ("redis-server", "Redis"),
)
"""Markers of command lines, the first found naming the role (FerretDB's names PostgreSQL)."""


def role_of(command_line: str) -> str:
    """Which part of the system a process is, from its command line."""
    return next((role for marker, role in ROLES if marker in command_line), "other")


def processes() -> dict[int, tuple[int, str, float]]:
    """Every process of the machine: its parent, command line and CPU seconds so far."""
    found: dict[int, tuple[int, str, float]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/cmdline", "rb") as file:
                command = file.read().replace(b"\0", b" ").decode(errors="replace")
            with open(f"/proc/{entry.name}/stat") as file:
                fields = file.read().rsplit(")", 1)[1].split()
        except OSError:  # ended meanwhile
            continue
        cpu = (int(fields[11]) + int(fields[12])) / CLOCK_TICKS
        found[int(entry.name)] = (int(fields[1]), command, cpu)
    return found


class CpuByRole:
    """The CPU every part of the system uses while it runs, read from ``/proc`` every
    ``interval`` seconds and added up by role (a process of no known role, such as a server's
    worker, counts as its parent's). A process that ends loses at most its last interval."""

    def __init__(self, interval: float = 0.25) -> None:
        self.interval = interval
        self.seconds: defaultdict[str, float] = defaultdict(float)
        self.readings: list[tuple[float, dict[str, float]]] = []
        self._seen: dict[int, tuple[str, str | None, float]] = {}

    def _read(self, counting: bool) -> None:
        now = processes()
        for pid, (parent, command, cpu) in now.items():
            seen = self._seen.get(pid)
            # A process born since the last reading counts from its start; one seen between
            # its fork and its exec shows its parent's command line until then.
            role, seen_command, seen_cpu = seen or ("", None, 0.0 if counting else cpu)
            if command != seen_command:
                role = role_of(command)
                while role == "other" and parent in now:
                    parent, parent_command, _ = now[parent]
                    role = role_of(parent_command)
            if counting:
                self.seconds[role] += cpu - seen_cpu
            self._seen[pid] = (role, command, cpu)
        self.readings.append((time.monotonic(), dict(self.seconds)))

    async def run(self) -> None:
        """Read until cancelled."""
        self._read(counting=False)
        while True:
            await asyncio.sleep(self.interval)
            self._read(counting=True)

    def cores(self, start: float | None = None, end: float | None = None) -> dict[str, float]:
        """Cores each role used on average between the readings nearest inside ``start`` and
        ``end`` (monotonic; by default the first and last), roles that used any."""
        inside = [
            reading
            for reading in self.readings
            if (start is None or reading[0] >= start) and (end is None or reading[0] <= end)
        ]
        if len(inside) < 2:
            return {}
        (first_at, first), (last_at, last) = inside[0], inside[-1]
        used = {role: (last[role] - first.get(role, 0.0)) / (last_at - first_at) for role in last}
        return {role: round(cores, 2) for role, cores in sorted(used.items()) if cores >= 0.01}


def step_summary(rate: float, report: dict[str, Any], verdict: Verdict) -> dict[str, Any]:
    """One rate's figures, as recorded."""
    phase = report["phases"][0]
    return {
        "offered": rate,
        "achieved": phase["achieved_rate"],
        "placement_p50_ms": phase["latency_ms"]["place"]["p50"],
        "placement_p99_ms": phase["latency_ms"]["place"]["p99"],
        "lag_p99_ms": {sink: s.get("lag_ms", {}).get("p99") for sink, s in phase["sinks"].items()},
        "errors": sum(phase["errors"].values()),
        "generator_cpu_ms_per_op": phase["generator"]["cpu_ms_per_operation"],
        "sustained": verdict.sustained,
        "why_not": verdict.reasons,
        "cores": report["cores"],
    }


async def loadtest(config: Path, rate: float, seconds: float, extra: list[str]) -> dict[str, Any]:
    """One ``fanout loadtest`` run; its report, with the cores each part of the system used
    while the load ran under ``cores``."""
    with tempfile.TemporaryDirectory() as directory:
        out = Path(directory) / "run.json"
        usage = CpuByRole()
        reading = asyncio.create_task(usage.run())
        checking_at = None
        try:
            process = await start_fanout(
                config, "loadtest", "--rate", f"{rate:g}", "--duration", f"{seconds:g}",
                "--transitions", "0", "--relays", "1", "--out", str(out), *extra,
            "--sample-every", str(SAMPLE_EVERY),
                stdout=asyncio.subprocess.PIPE,
            )  # fmt: skip
            assert process.stdout is not None
            async for line in process.stdout:
                if line.startswith(b"[checking]") and checking_at is None:
                    checking_at = time.monotonic()
            await process.wait()
        finally:
            reading.cancel()
        report: dict[str, Any] = json.loads(out.read_text())
    # The load ran for the phase's seconds, and was drained, before the check began.
    phase = report["phases"][0]
    load_end = (checking_at or time.monotonic()) - phase["drain_seconds"]
    report["cores"] = usage.cores(load_end - phase["seconds"], load_end)
    return report


async def climb(
    name: str, config: Path, start: float, factor: float, seconds: float, extra: list[str]
) -> dict[str, Any]:
    """Rising rates until one is not sustained; the highest that was. A first short run at
    the starting rate, not recorded, warms what serves the load (pools, caches, plans)."""
    await loadtest(config, start, WARM_UP_SECONDS, extra)
    steps: list[dict[str, Any]] = []
    rate, best = start, 0.0
    while rate <= 2_000:
        report = await loadtest(config, rate, seconds, extra)
        verdict = judge(report)
        steps.append(step_summary(rate, report, verdict))
        outcome = "sustained" if verdict.sustained else "; ".join(verdict.reasons)
        print(f"{name:>8} {rate:7.0f}/s  {outcome}  cores {report['cores']}")
        if not verdict.sustained:
            break
        best = rate
        rate = round(rate * factor)
    return {"sustained_rate": best, "steps": steps}


async def run(args: argparse.Namespace, settings: dict[str, Any]) -> dict[str, Any]:
    reference = await run_write_path(seconds=5, rounds=2, concurrency=32)
    write_path_rate = reference["gateway_median"]
    print(f"write path alone: {write_path_rate:.0f} orders/s")
    settings["logging"] = {"level": "INFO"}  # the API's start is read from its log
    settings.setdefault("api", {})["workers"] = args.workers
    with tempfile.TemporaryDirectory() as directory:
        config = write_config(Path(directory), settings)
        migrate = await start_fanout(config, "migrate", "--create-database")
        await migrate.wait()
        paths = {"embedded": await climb("embedded", config, args.start, args.factor,
                                         args.seconds, [])}  # fmt: skip
        async with api_server(config) as api:
            paths["http"] = await climb(
                "http", config, args.start, args.factor, args.seconds,
                ["--via", "http", "--url", api.url],
            )  # fmt: skip
    for path in paths.values():
        path["share_of_write_path"] = round(path["sustained_rate"] / write_path_rate, 3)
    for name, path in paths.items():
        print(
            f"{name}: {path['sustained_rate']:.0f} orders/s sustained, "
            f"{path['share_of_write_path']:.2f} of the write path's {write_path_rate:.0f}/s"
        )
    return {
        "write_path_orders_per_second": write_path_rate,
        "p99_bound_ms": P99_BOUND_MS,
        "seconds_per_rate": args.seconds,
        "api_workers": args.workers,
        "paths": paths,
        "target_share": TARGET_SHARE,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="config/loadtest.yaml", help="the load profile")
    parser.add_argument("--seconds", type=float, default=30.0, help="length of each rate's run")
    parser.add_argument("--start", type=float, default=100.0, help="the first rate")
    parser.add_argument("--factor", type=float, default=1.25, help="next rate: last times this")
    parser.add_argument("--workers", type=int, default=2, help="fanout serve --workers")
    args = parser.parse_args()
    settings = yaml.safe_load(Path(args.config).read_text())
    results = asyncio.run(run(args, settings))
    print(f"results: {write_results('end_to_end', results)}")


if __name__ == "__main__":
    main()
