"""One report from the reports of load generators run in parallel on one run id.

Each generator (``fanout loadtest --run-id R --part K``, started by any orchestrator) reports
its own share. Counts add up; latency and lag percentiles come from the generators' HDR
histograms added together, so they are exact, not averages of percentiles. Figures every
generator measured of the whole system (the relay's deliveries and backlog) are taken at
their largest, not added.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from typing import TypeVar

from gateway.errors import GatewayError
from gateway.loadtest.model import (
    EncodedLatencies,
    LoadReport,
    PhaseReport,
    SinkReport,
    TimelineRow,
)
from gateway.loadtest.runner import generator_cost
from gateway.loadtest.stats import Latencies
from gateway.loadtest.verdict import judge
from gateway.operations.verify import DriftCounts

K = TypeVar("K")


class MergeError(GatewayError):
    """Reports that are not parts of one run."""


def merge_reports(reports: Sequence[LoadReport], names: Sequence[str]) -> LoadReport:
    """The run the reports are parts of; ``names`` (their files) name the one at fault."""
    if len(reports) < 2:
        raise MergeError("give at least two reports to merge")
    first = reports[0]
    parts: list[int | None] = []
    for report, name in zip(reports, names, strict=True):
        if report["run_id"] != first["run_id"]:
            raise MergeError(
                f"{name}: run id {report['run_id']!r} is not {first['run_id']!r} "
                f"(of {names[0]}); only parts of one run merge"
            )
        if report["part"] in parts:
            raise MergeError(f"{name}: part {report['part']} is given twice")
        if [p["name"] for p in report["phases"]] != [p["name"] for p in first["phases"]]:
            raise MergeError(f"{name}: its phases differ from those of {names[0]}")
        if "histograms" not in report["phases"][0]:
            raise MergeError(f"{name}: has no histograms (written by an older version)")
        parts.append(report["part"])
    phases = [
        _merge_phase([report["phases"][index] for report in reports])
        for index in range(len(first["phases"]))
    ]
    result, failure = judge(phases[0])
    return {
        "run_id": first["run_id"],
        "part": None,
        "parts": parts,
        "started_at": min(report["started_at"] for report in reports),
        "plan": first["plan"],
        "host": first["host"],
        "phases": phases,
        "interrupted": any(report["interrupted"] for report in reports),
        "result": result,
        "failure": failure,
    }


def merged_latencies(encoded: Iterable[EncodedLatencies]) -> Latencies:
    """The histograms added together."""
    merged = Latencies()
    for histogram in encoded:
        merged.add(histogram)
    return merged


def _add(counters: Iterable[dict[K, int]]) -> dict[K, int]:
    total: Counter[K] = Counter()
    for counter in counters:
        total.update(counter)
    return dict(total)


def _merge_phase(phases: list[PhaseReport]) -> PhaseReport:
    first = phases[0]
    seconds = max(p["seconds"] for p in phases)
    offering = max(p["offering_seconds"] for p in phases)
    offered = _add(p["operations"]["offered"] for p in phases)
    completed = _add(p["operations"]["completed"] for p in phases)
    latency = {
        op: merged_latencies(p["histograms"]["latency"][op] for p in phases)
        for op in first["histograms"]["latency"]
    }
    lag = {
        sink: merged_latencies(p["histograms"]["lag"][sink] for p in phases)
        for sink in first["histograms"]["lag"]
    }
    generators = [p["generator"] for p in phases]
    merged: PhaseReport = {
        "name": first["name"],
        "via": first["via"],
        "mode": " + ".join(sorted({p["mode"] for p in phases})),
        "completed_as_planned": all(p["completed_as_planned"] for p in phases),
        "seconds": seconds,
        "offering_seconds": offering,
        "operations": {"offered": offered, "completed": completed},
        "offered_rate": round(sum(offered.values()) / max(offering, 1e-9), 1),
        "achieved_rate": round(sum(completed.values()) / max(seconds, 1e-9), 1),
        "errors": _add(p["errors"] for p in phases),
        "latency_ms": {op: histogram.summary() for op, histogram in latency.items()},
        "generator": generator_cost(
            sum(g["driver_cpu_seconds"] for g in generators),
            sum(g["coordinator_cpu_seconds"] for g in generators),
            sum(g["processes"] for g in generators),
            sum(completed.values()),
        ),
        "orders": {
            "placed": sum(p["orders"]["placed"] for p in phases),
            "in_postgres": sum(p["orders"]["in_postgres"] for p in phases),
            "left_behind": sum(p["orders"]["left_behind"] for p in phases),
            "partially_written": sum(p["orders"]["partially_written"] for p in phases),
        },
        "sinks": {
            sink: _merge_sink([p["sinks"][sink] for p in phases], lag.get(sink))
            for sink in first["sinks"]
        },
        "histograms": {
            "latency": {op: histogram.encode() for op, histogram in latency.items()},
            "lag": {sink: histogram.encode() for sink, histogram in lag.items()},
        },
        "drained": all(p["drained"] for p in phases),
        "drain_seconds": max(p["drain_seconds"] for p in phases),
        "fault": next((p["fault"] for p in phases if p["fault"] is not None), None),
        "timeline": _merge_timelines([p["timeline"] for p in phases]),
    }
    payments = [p["payments"] for p in phases if "payments" in p]
    if payments:
        merged["payments"] = {
            "lives": _add(part["lives"] for part in payments),
            "outcomes": _add(part["outcomes"] for part in payments),
            "payment_status": _add(part["payment_status"] for part in payments),
            "awaited_timeouts": all(part["awaited_timeouts"] for part in payments),
        }
    return merged


def _merge_sink(sinks: list[SinkReport], lag: Latencies | None) -> SinkReport:
    drifts = [s["drift"] for s in sinks]
    counts = {
        key: sum(d[key] for d in drifts)
        for key in ("matched", "missing", "stale", "mismatched", "extra")
    }
    drift: DriftCounts = {
        "sink": drifts[0]["sink"],
        "matched": counts["matched"],
        "missing": counts["missing"],
        "stale": counts["stale"],
        "mismatched": counts["mismatched"],
        "extra": counts["extra"],
        "unreadable": next((d["unreadable"] for d in drifts if d.get("unreadable")), None),
        "clean": all(d["clean"] for d in drifts),
    }
    merged: SinkReport = {"drift": drift}
    if lag is not None:
        merged["lag_ms"] = lag.summary()
        merged["never_seen"] = sum(s.get("never_seen", 0) for s in sinks)
        merged["read_errors"] = sum(s.get("read_errors", 0) for s in sinks)
        merged["last_read_error"] = next(
            (s["last_read_error"] for s in sinks if s.get("last_read_error")), None
        )
        # Every generator read the relay's own counters, which count every generator's events.
        merged["delivered_events"] = max(s.get("delivered_events", 0) for s in sinks)
        merged["backlog_max"] = max(s.get("backlog_max", 0) for s in sinks)
    return merged


def _merge_timelines(timelines: list[list[TimelineRow]]) -> list[TimelineRow]:
    """Second by second, the seconds counted from each generator's own start."""
    merged: list[TimelineRow] = []
    for index in range(max(len(timeline) for timeline in timelines)):
        rows = [timeline[index] for timeline in timelines if index < len(timeline)]
        latency = {
            op: merged_latencies(r["latency_histograms"][op] for r in rows)
            for op in rows[0]["latency_histograms"]
        }
        lag = {
            sink: merged_latencies(r["lag_histograms"][sink] for r in rows if sink in r["lag_ms"])
            for sink in rows[0]["lag_histograms"]
        }
        merged.append(
            {
                "t": rows[0]["t"],
                "offered_rate": round(sum(r["offered_rate"] for r in rows), 1),
                "achieved_rate": round(sum(r["achieved_rate"] for r in rows), 1),
                "errors": sum(r["errors"] for r in rows),
                "in_flight": sum(r["in_flight"] for r in rows),
                "latency_ms": {op: h.summary() for op, h in latency.items()},
                "latency_histograms": {op: h.encode() for op, h in latency.items()},
                "backlog": _largest(r["backlog"] for r in rows),
                "delivered_rate": _largest(r["delivered_rate"] for r in rows),
                "lag_ms": {sink: h.summary() for sink, h in lag.items()},
                "lag_histograms": {sink: h.encode() for sink, h in lag.items()},
            }
        )
    return merged


def _largest(values: Iterable[dict[str, K]]) -> dict[str, K]:
    largest: dict[str, K] = {}
    for row in values:
        for key, value in row.items():
            if key not in largest or value > largest[key]:  # type: ignore[operator]
                largest[key] = value
    return largest
