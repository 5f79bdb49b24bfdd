"""The CLI's tables: each command's result as rich renders it."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from datetime import UTC
from typing import Any

from rich.table import Table
from rich.text import Text

from gateway.history.check import FoldCheck
from gateway.history.store import OrderEvent
from gateway.operations.verify import Drift
from gateway.operations.verify_log import LogDrift
from gateway.postgres.migrations import MigrationStatus
from gateway.sharding.move_records import ShardMove
from gateway.sharding.plan import Plan
from gateway.sharding.rebalance import PlannedMove, Progress
from gateway.sharding.reconcile import Reconciliation
from gateway.sharding.status import ShardsStatus
from gateway.write_path.orders_report import OrdersReport


def migration_rows(statuses: Sequence[MigrationStatus]) -> list[dict[str, Any]]:
    """Each migration's state, as JSON."""
    return [
        {
            "version": s.version,
            "name": s.name,
            "state": s.state.value,
            "applied_at": s.applied_at.isoformat() if s.applied_at else None,
            "reversible": s.reversible,
        }
        for s in statuses
    ]


def migrations_table(statuses: Sequence[MigrationStatus]) -> Table:
    """Each migration: applied, pending, changed since applied, or unknown."""
    table = Table("version", "name", "state", "applied at", "down script")
    for s in statuses:
        table.add_row(
            f"{s.version:04d}",
            s.name,
            s.state.value,
            s.applied_at.isoformat(timespec="seconds") if s.applied_at else "",
            "yes" if s.reversible else "no",
        )
    return table


def status_table(rows: Sequence[dict[str, object]]) -> Table:
    """Per sink: backlog, oldest undelivered, counters, and who serves it."""
    table = Table(
        "sink", "backlog", "oldest", "delivered", "retrying", "dead", "relays", "last error"
    )
    for row in rows:
        oldest = row["oldest_undelivered_seconds"]
        unserved_for = row["unserved_seconds"]
        relays = f"none for {unserved_for:.0f}s" if isinstance(unserved_for, float) else None
        table.add_row(
            str(row["sink"]),
            str(row["backlog"]),
            f"{oldest:.1f}s" if isinstance(oldest, float) else "",
            str(row["delivered"]),
            str(row["retrying"]),
            str(row["dead_lettered"]),
            relays or str(row["relays"]),
            Text(str(row["last_error"] or "")),
        )
    return table


def sinks_table(rows: Sequence[dict[str, Any]]) -> Table:
    """Every registered sink: configured, served, delivered, dead letters."""
    table = Table("sink", "configured", "served", "unserved for", "delivered", "dead")
    for row in rows:
        table.add_row(
            str(row["sink"]),
            "yes" if row["configured"] else "no",
            "yes" if row["served"] else "no",
            "" if row["served"] else f"{row['unserved_seconds']:.0f}s",
            str(row["delivered"]),
            str(row["dead_lettered"]),
        )
    return table


def dead_letters_table(letters: Sequence[dict[str, Any]]) -> Table:
    """Dead letters with their reason and last error."""
    table = Table("sink", "event", "type", "aggregate", "version", "reason", "attempts", "error")
    for letter in letters:
        table.add_row(
            str(letter["sink"]),
            str(letter["event_id"]),
            str(letter["event_type"]),
            str(letter["aggregate_id"]),
            str(letter["version"]),
            str(letter["reason"]),
            str(letter["attempts"]),
            Text(str(letter["last_error"])),
        )
    return table


def verdict(drift: Drift | LogDrift) -> str:
    """A comparison's result in one word: ok, DRIFT, or UNREADABLE (the sink could not be
    read, so its counts are partial)."""
    if drift.unreadable is not None:
        return "UNREADABLE"
    return "ok" if drift.clean else "DRIFT"


def unreadable_lines(results: Sequence[Drift | LogDrift]) -> list[str]:
    """A line for each sink that could not be read, saying how."""
    return [
        f"{drift.sink}: could not be read: {drift.unreadable}"
        for drift in results
        if drift.unreadable is not None
    ]


def drift_table(results: Sequence[Drift]) -> Table:
    """Each sink's comparison with PostgreSQL."""
    table = Table("sink", "matched", "missing", "stale", "mismatched", "extra", "result")
    for drift in results:
        table.add_row(
            drift.sink,
            str(drift.matched),
            str(drift.missing),
            str(drift.stale),
            str(drift.mismatched),
            str(drift.extra),
            verdict(drift),
        )
    return table


def log_drift_table(results: Sequence[LogDrift]) -> Table:
    """Each log sink's comparison with the outbox."""
    table = Table(
        "sink", "matched", "missing", "out of order", "repeated", "not retained", "result"
    )
    for drift in results:
        table.add_row(
            drift.sink,
            str(drift.matched),
            str(drift.missing),
            str(drift.out_of_order),
            str(drift.repeated),
            str(drift.not_retained),
            verdict(drift),
        )
    return table


def events_lines(events: Sequence[OrderEvent]) -> list[str]:
    """An order's stream, a line per event (version, time in UTC, type, and the order's
    status and payment status after it), what the event says in an indented line below."""
    lines = [f"{'ver':>4}  {'occurred at (UTC)':19}  {'event':23}  {'status':10}  payment"]
    for event in events:
        payload = event.payload
        when = event.occurred_at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")
        lines.append(
            f"{event.version:>4}  {when}  {event.event_type:23}  "
            f"{payload.get('status', ''):10}  {payload.get('payment_status') or ''}"
        )
        details = []
        if "payment" in payload:
            payment = payload["payment"]
            details.append(
                f"payment {payment['payment_id']}: {payment['status']} {payment['amount']} "
                f"{payment['currency']}, {payment['outcome']}"
            )
        if "reason" in payload:
            details.append(f"reason {payload['reason']}")
        if "previous_status" in payload:
            details.append(f"from {payload['previous_status']}")
        if details:
            lines.append(" " * 6 + "; ".join(details))
    return lines


def fold_check_table(check: FoldCheck) -> Table:
    """The fold check's counts, then its first differences, one row each."""
    table = Table("checked", "matched", "different", "broken", "without history", "truncated")
    table.add_row(
        str(check.checked),
        str(check.matched),
        str(check.different),
        str(check.broken),
        str(check.without_history),
        str(check.truncated),
    )
    if check.examples:
        table.add_section()
        for example in check.examples:
            table.add_row(f"order {example['order_id']}", example["problem"], end_section=False)
    return table


def report_table(report: OrdersReport) -> Table:
    """The orders report: per group and currency, orders and revenue."""
    period = f"{report.since:%Y-%m-%d %H:%M} to {report.until:%Y-%m-%d %H:%M}"
    title = f"orders by {report.group_by.value}, {period}"
    table = Table(report.group_by.value, "currency", "orders", "revenue", title=title)
    for row in report.rows:
        table.add_row(row.bucket or "(none)", row.currency, str(row.orders), str(row.revenue))
    return table


def shards_table(status: ShardsStatus) -> Table:
    """Per shard: customers (and the directory's count), orders, backlog; the skew below."""
    table = Table("shard", "customers", "in directory", "orders", "largest backlog")
    for name, counts in status.counts.items():
        directory = str(status.directory.get(name, 0))
        if counts is None:
            table.add_row(name, "-", directory, "-", f"unreachable: {status.missing.get(name)}")
        else:
            table.add_row(
                name, str(counts.customers), directory, str(counts.orders), str(counts.backlog)
            )
    skews = {field: status.skew(field) for field in ("customers", "orders")}
    table.caption = "skew (largest / mean): " + ", ".join(
        f"{field} {value:.2f}" if value is not None else f"{field} -"
        for field, value in skews.items()
    )
    return table


def plan_table(plan: Plan) -> Table:
    """How many customers the current placement would move, from which shard to which."""
    table = Table("from", "to", "customers", title=f"{plan.moving} of {plan.customers} customers")
    for (source, target), count in plan.moves.items():
        table.add_row(source, target, str(count))
    return table


def planned_moves_table(planned: Sequence[PlannedMove], progress: Progress | None) -> Table:
    """A rebalance's or a drain's moves, from which shard to which, and how the run went."""
    counts: Counter[tuple[str, str]] = Counter((m.source, m.target) for m in planned)
    if progress is None:
        title = f"{len(planned)} move(s) planned (dry run: nothing moved)"
    else:
        title = (
            f"{progress.moved} of {progress.planned} customers moved in {progress.seconds:.1f} s "
            f"({progress.customers_per_second:.1f} customers/s, {progress.rows} rows, "
            f"{progress.rows_per_second:.0f} rows/s), {len(progress.failed)} failed"
        )
    table = Table("from", "to", "customers", title=title)
    for (source, target), count in sorted(counts.items()):
        table.add_row(source, target, str(count))
    return table


def moves_table(moves: Sequence[ShardMove]) -> Table:
    """Customer moves between shards: the unfinished ones and the latest finished."""
    table = Table("move", "customer", "from", "to", "state", "started", "updated", "last error")
    for move in moves:
        table.add_row(
            str(move.id),
            str(move.customer_id),
            move.source,
            move.target,
            move.state.value,
            move.started_at.isoformat(timespec="seconds") if move.started_at else "",
            move.updated_at.isoformat(timespec="seconds") if move.updated_at else "",
            move.last_error or "",
        )
    return table


def reconciliation_table(result: Reconciliation) -> Table:
    """Each reservation that disagrees with its order, and what was done about it."""
    title = (
        f"{result.orders_checked} live orders and {result.reservations_checked} committed "
        f"reservations checked: {len(result.breaks)} broken, {len(result.unrepaired)} left"
    )
    table = Table(
        "order", "shard", "reservation", "order status", "repair", "repaired", title=title
    )
    for found in result.breaks:
        table.add_row(
            str(found.order_id),
            found.shard,
            found.reservation.value if found.reservation else "none",
            found.order.value if found.order else "none",
            found.repair.value if found.repair else "none: an operator decides",
            "yes" if found.repaired else "no",
        )
    return table
