"""Rendering a ``fanout doctor`` report as rich tables."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from rich.console import Console
from rich.table import Table

from gateway.operations.doctor import Report

# What an outbox owes each sink: the catalog's (or the one database's) and each shard's.
OUTBOX_SINK_COLUMNS = (
    "sink",
    "backlog",
    "oldest_undelivered_seconds",
    "delivered",
    "retrying",
    "dead_lettered",
    "relays",
)
# A replica's state: the one database's, or a shard's.
REPLICA_COLUMNS = ("replica", "state", "in_use", "lag_bytes", "lag_seconds", "reads", "error")


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:,.1f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def _table(title: str, rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> Table:
    table = Table(*columns, title=title, title_justify="left")
    for row in rows:
        table.add_row(*(_cell(row.get(column)) for column in columns))
    return table


def _ok(flag: bool) -> str:
    return "[green]ok[/green]" if flag else "[red]DOWN[/red]"


def render(report: Report, console: Console) -> None:
    """Print every section of ``report``."""
    postgres = report["postgres"]
    if postgres["ok"]:
        console.print(
            f"PostgreSQL {postgres['server_version']}, database {postgres['database']} "
            f"({postgres['database_bytes'] / 1_048_576:,.1f} MiB): {_ok(True)}; "
            f"statistics since {postgres['statistics_reset_at'] or 'the cluster started'}"
        )
        console.print(
            _table(
                "Connections by state",
                report["connections"],
                [
                    "state",
                    "connections",
                    "longest_in_state_seconds",
                    "oldest_transaction_seconds",
                    "waiting_on_locks",
                ],
            )
        )
        console.print(
            _table(
                "Locks by relation and mode",
                report["locks"],
                ["relation", "mode", "granted", "locks", "sessions"],
            )
        )
        statements = report["statements"]
        if statements["available"]:
            console.print(
                _table(
                    f"Slowest statements ({statements['detail']})",
                    statements["statements"],
                    ["mean_ms", "max_ms", "calls", "total_ms", "rows", "query"],
                )
            )
        else:
            console.print(
                f"[yellow]Slowest statements unavailable:[/yellow] {statements['detail']}"
            )
        indexes = [
            {**index, "flag": "UNUSED" if index["unused"] else ""} for index in report["indexes"]
        ]
        console.print(
            _table(
                "Index usage (unused: never scanned and enforcing no uniqueness)",
                indexes,
                ["table_name", "index_name", "scans", "tuples_read", "size_bytes", "flag"],
            )
        )
        outbox = report["outbox"]
        console.print(
            _table(
                f"Outbox: {outbox['events']:,} events kept, oldest {outbox['oldest_event_at']}",
                outbox["sinks"],
                OUTBOX_SINK_COLUMNS,
            )
        )
        _render_payments(report["payments"], console)
        replication = report["replication"]
        primary = replication["primary"]
        console.print(
            f"Primary: {primary['address']}, timeline {primary['timeline']}; last promotion: "
            f"{primary['last_promotion_at'] or 'none seen (or the role may not list the WAL)'}"
        )
        if replication["replicas"]:
            console.print(
                _table(
                    "Replicas (in use: serving reads without a consistency token)",
                    replication["replicas"],
                    REPLICA_COLUMNS,
                )
            )
        if replication["standbys"]:
            console.print(
                _table(
                    "Standbys streaming from this primary (pg_stat_replication)",
                    replication["standbys"],
                    [
                        "application_name",
                        "client_addr",
                        "state",
                        "replay_lag_bytes",
                        "replay_lag_seconds",
                        "sync_state",
                    ],
                )
            )
    else:
        console.print(f"PostgreSQL: {_ok(False)} {postgres['detail']}")
    for shard in report.get("shards", []):
        _render_shard(shard, console)
    sinks = [{**sink, "health": _ok(sink["ok"])} for sink in report["sinks"]]
    console.print(_table("Sinks", sinks, ["name", "health", "detail", "backlog", "last_error"]))


def _render_shard(shard: Report, console: Console) -> None:
    if not shard["ok"]:
        console.print(f"Shard {shard['name']}: {_ok(False)} {shard['detail']}")
        return
    console.print(
        _table(
            f"Shard {shard['name']}: {_ok(True)} ({shard['latency_ms']:,.1f} ms); its outbox",
            shard["sinks"],
            OUTBOX_SINK_COLUMNS,
        )
    )
    if shard.get("replicas"):
        console.print(
            _table(
                f"Shard {shard['name']}: its replicas (in use: serving reads without a token)",
                shard["replicas"],
                REPLICA_COLUMNS,
            )
        )


def _render_payments(payments: Report, console: Console) -> None:
    counts = payments["needing_attention"]
    if not counts:
        console.print("Payments: none needs attention")
        return
    summary = ", ".join(f"{count:,} {outcome}" for outcome, count in sorted(counts.items()))
    console.print(
        _table(
            f"[yellow]Payments needing attention: {summary}[/yellow] (latest first)",
            payments["latest"],
            ["received_at", "outcome", "payment_id", "order_id", "status", "amount", "currency"],
        )
    )
