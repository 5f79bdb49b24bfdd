"""The chaos run's schedule and its rule for which failed requests a fault explains."""

from __future__ import annotations

import itertools
from collections import Counter
from typing import Any

from bench.chaos.plan import ChaosPlan, FaultWindow, explained, fault_schedule
from bench.chaos.run import verdict


def test_every_fault_runs_as_often_as_asked_within_the_load() -> None:
    plan = ChaosPlan(orders=6_000, rate=60)
    schedule = fault_schedule(plan, repeats=3)
    kinds = Counter((fault.kind, fault.target) for fault in schedule)
    assert set(kinds.values()) == {3}
    assert {target for kind, target in kinds if kind == "stop-store"} == set(plan.stores)
    assert {target for kind, target in kinds if kind == "kill-relay"} == {"0", "1"}
    assert ("restart-postgres", "") in kinds and ("kill-api", "") in kinds
    times = [fault.at for fault in schedule]
    assert times == sorted(times) and times[0] > 0 and times[-1] <= 0.8 * plan.load_seconds
    assert all(a.kind != b.kind or a.target != b.target for a, b in itertools.pairwise(schedule))


def test_only_a_running_fault_explains_a_failure_and_only_its_own_kind() -> None:
    restart = FaultWindow("restart-postgres", "", began=10.0, ended=12.0)
    api = FaultWindow("kill-api", "", began=30.0, ended=33.0)
    store = FaultWindow("stop-store", "redis", began=50.0, ended=70.0)
    windows = [restart, api, store]

    assert explained("HTTP 503", 11.0, windows)
    assert explained("HTTP 503", 12.0 + 9.0, windows)  # pools reconnecting just after
    assert not explained("HTTP 503", 40.0, windows)
    assert not explained("HTTP 503 without Retry-After", 11.0, windows)
    assert not explained("HTTP 500", 11.0, windows)
    assert explained("ConnectError", 31.0, windows)
    assert not explained("HTTP 503", 31.0, windows)  # a dead API answers nothing
    assert not explained("ConnectError", 60.0, windows)  # a store outage fails no request


def clean_report() -> dict[str, Any]:
    return {
        "drained": True,
        "stores": {"redis": {"clean": True}},
        "dead_letters": {},
        "orders": {"placed": 5, "in_postgres": 5, "transitions": 2, "transitions_in_postgres": 2},
        "requests": {"unexplained_failures": [], "operations_given_up": {}},
    }


def test_a_chaos_run_is_broken_by_a_dead_letter_or_a_crash_as_by_drift() -> None:
    assert verdict(clean_report()) == []
    dead = clean_report() | {"dead_letters": {"mongodb": 3}}
    assert verdict(dead) == ["dead letters: {'mongodb': 3}"]
    crashed = clean_report() | {"processes_exited": ["relay-1"]}
    assert verdict(crashed) == ["processes exited on their own: ['relay-1']"]
    drifted = clean_report() | {"stores": {"redis": {"clean": False}}}
    assert verdict(drifted) == ["redis: {'clean': False}"]
