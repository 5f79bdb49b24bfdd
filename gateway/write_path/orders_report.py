"""The orders report: orders and revenue over a period, grouped by status, day or segment,
over every shard (or the one database), merged; explicitly partial when a shard is missing."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any

from gateway.errors import ValidationError
from gateway.postgres.database import Connection
from gateway.postgres.queries import query


class GroupBy(StrEnum):
    """What the report's rows are."""

    STATUS = "status"
    DAY = "day"
    SEGMENT = "segment"


@dataclass(frozen=True)
class ReportRow:
    """One group's orders in one currency: how many, and their total amount."""

    bucket: str
    currency: str
    orders: int
    revenue: Decimal


@dataclass(frozen=True)
class OrdersReport:
    """The report over ``[since, until)``: its rows, the databases that answered, and those
    that did not (with why), which make it partial."""

    since: datetime
    until: datetime
    group_by: GroupBy
    rows: list[ReportRow]
    answered: list[str]
    missing: dict[str, str] = field(default_factory=dict)

    @property
    def partial(self) -> bool:
        """Whether some database's orders are missing from the rows."""
        return bool(self.missing)

    def as_json(self) -> dict[str, Any]:
        """The report as JSON (amounts as strings)."""
        return {
            "since": self.since.isoformat(),
            "until": self.until.isoformat(),
            "group_by": self.group_by.value,
            "partial": self.partial,
            "answered": self.answered,
            "missing": self.missing,
            "rows": [
                {
                    "bucket": row.bucket,
                    "currency": row.currency,
                    "orders": row.orders,
                    "revenue": str(row.revenue),
                }
                for row in self.rows
            ],
        }


def check_period(since: datetime, until: datetime, group_by: GroupBy | str) -> GroupBy:
    """The period is two aware datetimes in order, and ``group_by`` is a :class:`GroupBy`."""
    for name, value in (("since", since), ("until", until)):
        if value.tzinfo is None:
            raise ValidationError.single(name, "needs a time zone (such as +00:00)")
    if until <= since:
        raise ValidationError.single("until", "must be after since")
    try:
        return GroupBy(group_by)
    except ValueError:
        allowed = ", ".join(g.value for g in GroupBy)
        raise ValidationError.single("group_by", f"{group_by!r} is not one of {allowed}") from None


async def report_rows(
    connection: Connection, since: datetime, until: datetime, group_by: GroupBy
) -> list[ReportRow]:
    """One database's rows."""
    rows = await connection.fetch(query("orders_report"), since, until, group_by.value)
    return [ReportRow(r["bucket"], r["currency"], r["orders"], r["revenue"]) for r in rows]


def merge_rows(parts: Iterable[Iterable[ReportRow]]) -> list[ReportRow]:
    """Several databases' rows as one: counts and amounts of the same group and currency
    added, sorted by group then currency."""
    merged: dict[tuple[str, str], tuple[int, Decimal]] = {}
    for part in parts:
        for row in part:
            orders, revenue = merged.get((row.bucket, row.currency), (0, Decimal(0)))
            merged[(row.bucket, row.currency)] = (orders + row.orders, revenue + row.revenue)
    return [
        ReportRow(bucket, currency, orders, revenue)
        for (bucket, currency), (orders, revenue) in sorted(merged.items())
    ]
