"""The Debezium comparison's pure parts: relay variants, rates and the steady runs' summary."""

from __future__ import annotations

import argparse
from typing import Any

import pytest

from bench.debezium.compare import (
    percentiles_ms,
    rates,
    relay_variant,
    summarise,
    visible_times,
    with_overrides,
)


def run(relay: str, rate: float, p50: float, p99: float, cpu: float = 1.0) -> dict[str, Any]:
    return {
        "relay": relay,
        "offered_per_second": rate,
        "achieved_per_second": rate,
        "lag_ms": {"p50": p50, "p90": p99, "p99": p99, "max": 2 * p99},
        "relay_cpu_ms_per_event": cpu,
        "delivery": {"missing": 0, "duplicates": 0},
    }


def test_a_variant_sets_each_dotted_key_and_leaves_the_rest() -> None:
    base = {"relay": {"batch_size": 500}, "sinks": {"kafka": {"type": "kafka"}}}
    name, overrides = relay_variant("nolinger:relay.linger_ms=0,sinks.kafka.linger_ms=0")

    changed = with_overrides(base, overrides)

    assert name == "nolinger"
    assert changed == {
        "relay": {"batch_size": 500, "linger_ms": 0},
        "sinks": {"kafka": {"type": "kafka", "linger_ms": 0}},
    }
    assert base == {"relay": {"batch_size": 500}, "sinks": {"kafka": {"type": "kafka"}}}


@pytest.mark.parametrize("text", ["nolinger", "fanout:relay.linger_ms=0", "x:linger", "1a:a=1"])
def test_a_malformed_variant_is_refused(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError):
        relay_variant(text)


def test_rates_are_a_comma_separated_list_of_positive_numbers() -> None:
    assert rates("300,600") == [300.0, 600.0]
    for text in ("300,", "0", "fast"):
        with pytest.raises(argparse.ArgumentTypeError):
            rates(text)


def test_the_summary_takes_medians_over_runs_and_compares_p99_with_the_rival() -> None:
    runs = [
        run("debezium_poll10ms", 300, 10, 20),
        run("debezium_poll10ms", 300, 12, 30),
        run("debezium_poll10ms", 300, 11, 25),
        run("fanout", 300, 15, 50, cpu=0.8),
        run("fanout", 300, 14, 40, cpu=0.9),
        run("fanout", 300, 16, 100, cpu=1.0),
        run("fanout", 600, 16, 60),
    ]

    summary = summarise(runs, "debezium_poll10ms")

    fanout = summary["300"]["relays"]["fanout"]
    assert (fanout["runs"], fanout["p50_ms_median"], fanout["p99_ms_median"]) == (3, 15, 50)
    assert (fanout["p99_ms_min"], fanout["p99_ms_max"], fanout["p99_spread"]) == (40, 100, 2.5)
    assert fanout["relay_cpu_ms_per_event_median"] == 0.9
    assert summary["300"]["p99_over_debezium_poll10ms"] == {"fanout": 2.0}
    assert summary["600"]["p99_over_debezium_poll10ms"] == {}


def test_a_transaction_is_visible_once_every_lower_txid_has_committed() -> None:
    # txid 11 commits last: 12 and 13, committed before it, wait for it
    visible = visible_times([(12, 1.010), (11, 1.050), (13, 1.020), (14, 1.060)])

    assert visible == {11: 1.050, 12: 1.050, 13: 1.050, 14: 1.060}


def test_percentiles_are_in_milliseconds() -> None:
    figures = percentiles_ms([i / 1000 for i in range(1, 101)])

    assert figures == {"p50": 51.0, "p90": 91.0, "p99": 100.0, "max": 100.0}
    assert percentiles_ms([]) == {}


def test_the_summary_splits_a_fanout_relay_s_lag_at_the_horizon() -> None:
    runs = [run("fanout", 300, 15, 50), run("fanout", 300, 15, 70)]
    for waited, r in zip((10, 20), runs, strict=True):
        r["horizon_wait_ms"] = {"p50": 1, "p99": waited}
        r["lag_after_horizon_ms"] = {"p50": 14, "p99": 40}

    fanout = summarise(runs, "debezium")["300"]["relays"]["fanout"]

    assert fanout["horizon_wait_p99_ms_median"] == 15
    assert fanout["lag_after_horizon_p99_ms_median"] == 40
