"""A PNG of a load test over time: rates, write latency, per-sink lag and backlog."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only: no display on servers and CI machines

import matplotlib.pyplot as plt

from gateway.loadtest.model import LoadReport


def _series(rows: Sequence[Mapping[str, Any]], *keys: str) -> list[float | None]:
    values: list[float | None] = []
    for row in rows:
        value: Any = row
        for key in keys:
            value = value.get(key) if isinstance(value, dict) else None
        values.append(value)
    return values


def draw(report: LoadReport, path: Path) -> None:
    """Four panels over time: rates, placement latency, per-sink lag, per-sink backlog."""
    figure, (rates, latency, lag, backlog) = plt.subplots(
        4, 1, figsize=(11, 13), sharex=True, constrained_layout=True
    )
    for phase in report["phases"]:
        rows = phase["timeline"]
        seconds = [row["t"] for row in rows]
        label = phase["name"]
        rates.plot(seconds, _series(rows, "offered_rate"), linestyle="--", label=f"{label} offered")
        rates.plot(seconds, _series(rows, "achieved_rate"), label=f"{label} achieved")
        for percentile in ("p50", "p99", "max"):
            latency.plot(
                seconds,
                _series(rows, "latency_ms", "place", percentile),
                label=f"{label} {percentile}",
            )
        if phase["name"] != "outbox":
            continue
        for index, sink in enumerate(phase["sinks"]):
            color = f"C{index}"
            p99 = _series(rows, "lag_ms", sink, "p99")
            p50 = _series(rows, "lag_ms", sink, "p50")
            lag.plot(seconds, p99, color=color, label=f"{sink} p99")
            lag.plot(seconds, p50, color=color, linestyle=":", label=f"{sink} p50")
            backlog.plot(seconds, _series(rows, "backlog", sink), color=color, label=sink)
        fault = phase.get("fault")
        if fault and fault.get("stopped_at") is not None:
            for axis in (rates, latency, lag, backlog):
                axis.axvspan(
                    fault["stopped_at"],
                    fault.get("started_at") or seconds[-1],
                    color="red",
                    alpha=0.1,
                    label=f"{fault['sink']} stopped" if axis is rates else None,
                )
    rates.set_ylabel("operations/s")
    latency.set_ylabel("placement latency (ms)")
    latency.set_yscale("log")
    lag.set_ylabel("commit to visible (ms)")
    lag.set_yscale("log")
    backlog.set_ylabel("backlog (events)")
    backlog.set_xlabel("seconds")
    for axis in (rates, latency, lag, backlog):
        axis.grid(True, alpha=0.3)
        if axis.get_legend_handles_labels()[0]:
            axis.legend(loc="upper left", fontsize="small", ncol=2)
    figure.suptitle(f"fanout loadtest {report['run_id']}")
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100)
    plt.close(figure)
