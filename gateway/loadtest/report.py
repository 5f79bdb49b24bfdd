"""The load test's summary tables (rich) and its JSON file."""

from __future__ import annotations

import json
from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from gateway.loadtest.model import LatencySummary, LoadReport, PhaseReport
from gateway.operations.verify import DriftCounts


def _ms(value: float | None) -> str:
    return "" if value is None else f"{value:,.1f}"


def _latency_columns(latency: LatencySummary) -> list[str]:
    return [_ms(latency[key]) for key in ("p50", "p90", "p99", "p99.9", "max")]


def render(report: LoadReport, console: Console) -> None:
    """Print the summary of every phase, side by side where they compare."""
    phases = report["phases"]
    writes = Table(
        "phase",
        "via",
        "offered/s",
        "achieved/s",
        "ops",
        "errors",
        "p50 ms",
        "p90 ms",
        "p99 ms",
        "p99.9 ms",
        "max ms",
        "CPU ms/op",
        title=f"Writes (run {report['run_id']})",
        title_justify="left",
    )
    for phase in phases:
        completed = phase["operations"]["completed"]
        latency = phase["latency_ms"]["place"]
        writes.add_row(
            phase["name"],
            phase["via"],
            f"{phase['offered_rate']:,.1f}",
            f"{phase['achieved_rate']:,.1f}",
            ", ".join(f"{op} {count:,}" for op, count in completed.items()),
            f"{sum(phase['errors'].values()):,}",
            *_latency_columns(latency),
            _ms(phase["generator"]["cpu_ms_per_operation"]),
        )
    console.print(writes)
    console.print(
        "[dim]Latency of order placement, from when each request was due. CPU ms/op: the load "
        "test's processes' CPU per operation (embedded, it includes the gateway's work).[/dim]"
    )
    for phase in phases:
        if phase["errors"]:
            errors = ", ".join(f"{kind}: {n:,}" for kind, n in sorted(phase["errors"].items()))
            console.print(f"[yellow]{phase['name']} errors[/yellow] {errors}")
    first = phases[0]
    sinks = Table(
        "sink",
        "lag p50 ms",
        "lag p99 ms",
        "lag max ms",
        "samples",
        "never seen",
        "delivered",
        "backlog max",
        "drift",
        title="Fan-out (commit to visible, read from each store)",
        title_justify="left",
    )
    for name, sink in first["sinks"].items():
        lag = sink.get("lag_ms", {})
        drift = sink["drift"]
        sinks.add_row(
            name,
            _ms(lag.get("p50")),
            _ms(lag.get("p99")),
            _ms(lag.get("max")),
            f"{lag.get('count', 0):,}",
            f"{sink.get('never_seen', 0):,}",
            f"{sink.get('delivered_events', 0):,}",
            f"{sink.get('backlog_max', 0):,}",
            _drift_text(drift),
        )
    console.print(sinks)
    for name, sink in first["sinks"].items():
        if sink.get("read_errors"):
            console.print(
                f"[yellow]{name}: {sink['read_errors']:,} failed reads while timing visibility"
                f"[/yellow], the last: {sink['last_read_error']}"
            )
    if len(phases) > 1:
        left = Table(
            "phase",
            "orders placed",
            "in PostgreSQL",
            "left behind",
            "partially written",
            *[f"{name} missing/stale" for name in first["sinks"]],
            title="What each approach leaves behind",
            title_justify="left",
        )
        for phase in phases:
            orders = phase["orders"]
            left.add_row(
                phase["name"],
                f"{orders['placed']:,}",
                f"{orders['in_postgres']:,}",
                f"{orders['left_behind']:,}",
                f"{orders['partially_written']:,}",
                *[
                    f"{s['drift']['missing']:,}/{s['drift']['stale']:,}"
                    for s in phase["sinks"].values()
                ],
            )
        console.print(left)
    for phase in phases:
        if phase["fault"]:
            fault = phase["fault"]
            console.print(
                f"{phase['name']}: {fault['sink']} stopped at {fault['stopped_at'] or 0:.1f} s, "
                f"started at {fault['started_at'] or 0:.1f} s"
            )
    _render_payments(first, console)
    drained = "drained" if first["drained"] else "NOT drained"
    drift_clean = all(sink["drift"]["clean"] for sink in first["sinks"].values())
    console.print(
        f"Relay {drained} in {first['drain_seconds']:.1f} s after the load; "
        f"drift check of this run's {first['orders']['placed']:,} orders: "
        + ("[green]no drift[/green]" if drift_clean else "[red]DRIFT[/red]")
    )
    if report.get("interrupted"):
        console.print("[yellow]Interrupted: the figures cover what ran.[/yellow]")
    failure = report.get("failure")
    if failure:
        console.print(f"[red]FAILED[/red]: {escape(failure)}")


def _render_payments(phase: PhaseReport, console: Console) -> None:
    payments = phase.get("payments")
    if payments is None:
        return
    table = Table(
        "orders placed then",
        "payment outcomes",
        "orders by payment status at the end",
        title="Payment saga",
        title_justify="left",
    )
    table.add_row(
        _counts(payments["lives"]),
        _counts(payments["outcomes"]),
        _counts(payments["payment_status"]),
    )
    console.print(table)
    if not payments["awaited_timeouts"]:
        console.print(
            "[yellow]Some orders still await their payment: the payment timeout is longer than "
            "the run waits (--drain-timeout), or no relay swept them.[/yellow]"
        )


def _counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{name} {count:,}" for name, count in sorted(counts.items())) or "none"


def _drift_text(drift: DriftCounts) -> str:
    if drift.get("unreadable"):
        return f"[red]unreadable: {escape(str(drift['unreadable']))}[/red]"
    if drift["clean"]:
        return f"none ({drift['matched']:,} matched)"
    parts = [f"{k} {drift[k]:,}" for k in ("missing", "stale", "mismatched") if drift[k]]
    return "[red]" + ", ".join(parts) + "[/red]"


def write_json(report: LoadReport, path: Path) -> None:
    """Write the whole report, timeline included."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2, default=str) + "\n")
