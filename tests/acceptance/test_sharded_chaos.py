"""The chaos run in sharded mode, short: orders through the API over a catalog and two shards
while each relay and the API are killed, each shard's server is stopped, the catalog's server
restarted, reservations lapse and customers are moved between the shards (``fanout shards
move``); then every order checked in every store, every product's stock accounted for, the
saga reconciled and every order of the moved customers resolved through the API. ``python -m
bench.chaos --sharded`` runs the long version by hand."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from bench.chaos import ChaosPlan, fault_schedule, run_chaos, verdict
from gateway import Gateway
from support.sharding import SHARD_SERVERS

STORES = ("redis", "elasticsearch")


async def test_nothing_is_lost_and_inventory_stays_exact_through_every_sharded_fault(
    gateway: Gateway, tmp_path: Path
) -> None:
    plan = ChaosPlan(
        orders=1_500,
        rate=20,
        stores=STORES,
        shards=tuple(SHARD_SERVERS.values()),
        reservation_seconds=2.0,
        shard_outage_seconds=8.0,
    )
    plan = replace(plan, faults=fault_schedule(plan, repeats=1))
    try:
        report = await run_chaos(plan, tmp_path)
    finally:
        # The session's pool outlived the catalog server's restart: its connections are gone.
        await gateway.pool.expire_connections()

    assert verdict(report) == [], (report["requests"], report.get("saga"))
    kinds = {window["kind"] for window in report["faults"]}
    assert kinds == {"kill-relay", "stop-shard", "restart-postgres", "kill-api", "move-customers"}
    assert all(window["ended"] is not None for window in report["faults"])
    stopped = {w["target"] for w in report["faults"] if w["kind"] == "stop-shard"}
    assert stopped == set(SHARD_SERVERS.values())
    for kind, drift in report["stores"].items():
        assert drift["matched"] == report["orders"]["placed"], kind
    saga = report["saga"]
    assert saga["held_after_final_sweep"] == 0
    assert saga["stock_discrepancies"] == []
    assert saga["reconciliation"]["exit_code"] == 0
    assert saga["reconciliation"]["breaks"] == []
    assert saga["reconciliation"]["orders_checked"] == report["orders"]["placed"]
    # The API was killed while a placement held units: they lapsed and the sweeper settled them.
    assert sum(saga["reservations"]["settled_after_expiry"].values()) >= 1
    # Customers were moved while their orders were placed and changed; each order of every
    # customer a move was tried for resolves through the API at its version, from its
    # customer's shard only.
    moves = report["moves"]
    assert moves["done"] >= 1, moves
    assert moves["unfinished_after_resume"] == 0
    assert moves["check"]["orders_checked"] >= 1
    assert moves["check"]["problems"] == 0, moves["check"]
    failed = report["requests"]["failed_attempts_by_kind"]
    assert [kind for kind in failed if kind.startswith("HTTP") and kind != "HTTP 503"] == []
