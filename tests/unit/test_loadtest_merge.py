"""Merging the reports of load generators run in parallel on one run id (no I/O)."""

from __future__ import annotations

import random
from typing import Any

import pytest

from gateway.loadtest.merge import MergeError, merge_reports
from gateway.loadtest.model import LoadReport
from gateway.loadtest.runner import generator_cost
from gateway.loadtest.stats import Latencies


def latencies(values: list[int]) -> Latencies:
    histogram = Latencies()
    for value in values:
        histogram.record(value)
    return histogram


def part_report(run_id: str, part: int | None, place: list[int], lag: list[int]) -> LoadReport:
    """A one-phase report of ``len(place)`` placements, drained and clean."""
    placed, lagged = latencies(place), latencies(lag)
    drift: Any = {
        "sink": "redis",
        "matched": len(place),
        "missing": 0,
        "stale": 0,
        "mismatched": 0,
        "extra": 0,
        "clean": True,
    }
    row: Any = {
        "t": 1.0,
        "offered_rate": float(len(place)),
        "achieved_rate": float(len(place)),
        "errors": 0,
        "in_flight": 1,
        "latency_ms": {"place": placed.summary()},
        "latency_histograms": {"place": placed.encode()},
        "backlog": {"redis": len(place)},
        "delivered_rate": {"redis": 100.0 + len(place)},
        "lag_ms": {"redis": lagged.summary()},
        "lag_histograms": {"redis": lagged.encode()},
    }
    phase: Any = {
        "name": "outbox",
        "via": "http",
        "mode": "open loop at 50/s",
        "completed_as_planned": True,
        "seconds": 1.0 + len(place) / 1000,
        "offering_seconds": 1.0,
        "operations": {"offered": {"place": len(place)}, "completed": {"place": len(place)}},
        "offered_rate": float(len(place)),
        "achieved_rate": float(len(place)),
        "errors": {"HTTP 503": 1},
        "latency_ms": {"place": placed.summary()},
        "generator": generator_cost(0.5, 0.25, 1, len(place)),
        "orders": {
            "placed": len(place),
            "in_postgres": len(place),
            "left_behind": 0,
            "partially_written": 0,
        },
        "sinks": {
            "redis": {
                "drift": drift,
                "lag_ms": lagged.summary(),
                "never_seen": 0,
                "read_errors": 0,
                "last_read_error": None,
                "delivered_events": 5_000 + len(place),
                "backlog_max": len(place),
            }
        },
        "histograms": {"latency": {"place": placed.encode()}, "lag": {"redis": lagged.encode()}},
        "drained": True,
        "drain_seconds": 0.1,
        "fault": None,
        "timeline": [row],
    }
    return {
        "run_id": run_id,
        "part": part,
        "started_at": f"2026-11-30T0{part or 0}:00:00+00:00",
        "plan": {},
        "host": {"cpus": 2, "python": "3.11"},
        "phases": [phase],
        "interrupted": False,
        "result": "clean",
    }


def test_parts_add_up_and_percentiles_come_from_the_merged_histograms() -> None:
    rng = random.Random(3)
    place = [[rng.randint(500, 900_000) for _ in range(n)] for n in (700, 300)]
    lag = [[rng.randint(5_000, 400_000) for _ in range(n)] for n in (70, 30)]
    parts = [part_report("r", k + 1, place[k], lag[k]) for k in range(2)]

    merged = merge_reports(parts, ["a.json", "b.json"])

    [phase] = merged["phases"]
    assert merged["parts"] == [1, 2] and merged["result"] == "clean"
    assert merged["started_at"] == "2026-11-30T01:00:00+00:00"
    assert phase["operations"]["completed"] == {"place": 1000}
    assert phase["errors"] == {"HTTP 503": 2}
    assert phase["orders"]["placed"] == 1000
    assert phase["latency_ms"]["place"] == latencies(place[0] + place[1]).summary()
    assert phase["sinks"]["redis"]["lag_ms"] == latencies(lag[0] + lag[1]).summary()
    assert phase["sinks"]["redis"]["drift"]["matched"] == 1000
    # The relay's counters are the system's, read by every part: the largest, not the sum.
    assert phase["sinks"]["redis"]["delivered_events"] == 5_700
    assert phase["generator"]["cpu_seconds"] == 1.5 and phase["generator"]["processes"] == 2
    [row] = phase["timeline"]
    assert row["achieved_rate"] == 1000.0 and row["in_flight"] == 2
    assert row["latency_ms"]["place"] == phase["latency_ms"]["place"]
    assert row["delivered_rate"] == {"redis": 800.0}


def test_a_part_that_drifted_makes_the_run_drift() -> None:
    parts = [part_report("r", 1, [1_000], [9_000]), part_report("r", 2, [2_000], [8_000])]
    parts[1]["result"] = "drift"
    parts[1]["phases"][0]["sinks"]["redis"]["drift"]["clean"] = False
    merged = merge_reports(parts, ["a", "b"])
    assert merged["result"] == "drift"
    assert merged["phases"][0]["sinks"]["redis"]["drift"]["clean"] is False


@pytest.mark.parametrize(
    ("second", "message"),
    [
        (part_report("other", 2, [1], [1]), "b.json: run id 'other' is not 'r'"),
        (part_report("r", 1, [1], [1]), "b.json: part 1 is given twice"),
    ],
)
def test_reports_of_different_runs_or_the_same_part_are_refused(
    second: LoadReport, message: str
) -> None:
    with pytest.raises(MergeError, match=message):
        merge_reports([part_report("r", 1, [1], [1]), second], ["a.json", "b.json"])


def test_one_report_is_not_a_merge() -> None:
    with pytest.raises(MergeError, match="at least two"):
        merge_reports([part_report("r", 1, [1], [1])], ["a.json"])
