"""The chaos run, short: a few thousand orders through the API while each fault happens once
(a relay killed, each store stopped, PostgreSQL restarted, the API killed), then every order
checked in every store. ``python -m bench.chaos`` runs the long version by hand."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from bench.chaos import ChaosPlan, fault_schedule, run_chaos, verdict
from gateway import Gateway


async def test_nothing_is_lost_or_drifts_through_every_fault(
    gateway: Gateway, tmp_path: Path
) -> None:
    plan = ChaosPlan(orders=2_000, rate=40, store_outage_seconds=15)
    plan = replace(plan, faults=fault_schedule(plan, repeats=1))
    try:
        report = await run_chaos(plan, tmp_path)
    finally:
        # The session's pool outlived PostgreSQL's restart: its connections are gone.
        await gateway.pool.expire_connections()

    assert verdict(report) == [], report["requests"]
    kinds = {window["kind"] for window in report["faults"]}
    assert kinds == {"kill-relay", "stop-store", "restart-postgres", "kill-api"}
    assert all(window["ended"] is not None for window in report["faults"])
    stopped = {w["target"] for w in report["faults"] if w["kind"] == "stop-store"}
    assert stopped == set(plan.stores)
    for kind, drift in report["stores"].items():
        assert drift["matched"] == report["orders"]["placed"], kind
    # Every refusal the client met was a 503 with Retry-After, never another server error.
    failed = report["requests"]["failed_attempts_by_kind"]
    assert [kind for kind in failed if kind.startswith("HTTP") and kind != "HTTP 503"] == []
