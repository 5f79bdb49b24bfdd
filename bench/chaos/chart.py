"""The chaos run's chart: per store, lag and backlog over time, with the faults shaded."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only: no display on servers and CI machines

import matplotlib.pyplot as plt

from bench.chaos.plan import FaultKind

COLOURS: dict[FaultKind, str] = {
    "kill-relay": "tab:purple",
    "stop-store": "tab:orange",
    "restart-postgres": "tab:red",
    "kill-api": "tab:green",
    "stop-shard": "tab:brown",
    "switchover": "tab:blue",
    "failover": "tab:red",
    "partition-primary": "tab:pink",
    "move-customers": "tab:olive",
}
"""The shade of each kind of fault."""


def draw(report: dict[str, Any], path: Path) -> None:
    """Age of the oldest undelivered event and backlog per store over time, faults shaded."""
    rows = report["timeline"]
    seconds = [row["t"] for row in rows]
    figure, (lag, backlog, placed) = plt.subplots(
        3, 1, figsize=(12, 11), sharex=True, constrained_layout=True
    )
    for kind in report["stores"]:
        lag.plot(seconds, [r["oldest_undelivered_seconds"].get(kind) for r in rows], label=kind)
        backlog.plot(seconds, [r["backlog"].get(kind) for r in rows], label=kind)
    placed.plot(seconds, [r["placed"] for r in rows], label="orders placed")
    placed.plot(seconds, [r["failed_attempts"] for r in rows], label="failed attempts (retried)")
    for window in report["faults"]:
        end = window["ended"] if window["ended"] is not None else window["began"]
        for axis in (lag, backlog, placed):
            axis.axvspan(window["began"], max(end, window["began"] + 0.5), alpha=0.15,
                         color=COLOURS[window["kind"]])  # fmt: skip
        label = window["kind"] + (f" {window['target']}" if window["target"] else "")
        lag.annotate(label, (window["began"], 0), rotation=90, fontsize=6, va="bottom")
    lag.set_ylabel("oldest undelivered event (s)")
    backlog.set_ylabel("backlog (events)")
    placed.set_ylabel("count")
    placed.set_xlabel("seconds")
    for axis in (lag, backlog, placed):
        axis.legend(loc="upper left", fontsize=8)
        axis.grid(alpha=0.3)
    plan = report["plan"]
    figure.suptitle(
        f"chaos run: {report['orders']['placed']:,} orders at {plan['rate']:g}/s, "
        f"{plan['faults']} faults (shaded: "
        + ", ".join(sorted({window["kind"] for window in report["faults"]}))
        + ")"
    )
    figure.savefig(path, dpi=110)
    plt.close(figure)
