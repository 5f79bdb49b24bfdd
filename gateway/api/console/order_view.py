"""Where an order is: PostgreSQL's version beside what each store holds, and its history."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from uuid import UUID

import asyncpg

from adapters.base import Sink
from adapters.kafka import FIND_SCAN_RECORDS
from adapters.readback import OrderSpan, ProjectedOrder, ReadBack, RecordFinder, RecordPlace
from gateway.history.store import OrderEvent, read_stream
from gateway.operations.store_reads import StoreUnreadable, read
from gateway.postgres.queries import query

ORDER_NUMBER = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")


class OrderLookupError(Exception):
    """What was typed does not name an order; the message says why, for the page."""


class Standing(StrEnum):
    """How a store's copy of an order compares with PostgreSQL's."""

    IN_STEP = "in step"
    BEHIND = "behind"
    MISSING = "missing"
    DIFFERENT = "different"
    UNREADABLE = "unreadable"
    NOT_READ_BACK = "not read back"


LAGGING = frozenset({Standing.BEHIND, Standing.MISSING, Standing.DIFFERENT, Standing.UNREADABLE})
"""The standings the page highlights."""


def standing(expected: ProjectedOrder, held: ProjectedOrder | None) -> Standing:
    """How ``held`` (a store's copy, ``None`` if it has none) compares with ``expected``
    (PostgreSQL's): missing, behind (an older version), different (the same or a newer
    version whose status or total differ) or in step."""
    if held is None:
        return Standing.MISSING
    if held.version < expected.version:
        return Standing.BEHIND
    if held != expected:
        return Standing.DIFFERENT
    return Standing.IN_STEP


def logged_standing(found: RecordPlace | None) -> Standing:
    """How a log (Kafka) stands with the order: in step when it holds the record of the
    order's latest event, else missing (not yet delivered, or lost)."""
    return Standing.IN_STEP if found is not None else Standing.MISSING


@dataclass(frozen=True)
class LoggedRecord:
    """Where a log holds the record of the order's latest event."""

    version: int
    place: RecordPlace


@dataclass(frozen=True)
class StoreCopy:
    """One sink's copy of the order."""

    sink: str
    standing: Standing
    held: ProjectedOrder | None = None
    detail: str | None = None
    record: LoggedRecord | None = None
    """For a log: the record of the order's latest event."""

    @property
    def version(self) -> int | None:
        """The order's version the store holds, when known."""
        if self.held is not None:
            return self.held.version
        return self.record.version if self.record is not None else None

    @property
    def lagging(self) -> bool:
        """Whether the page highlights it."""
        return self.standing in LAGGING


@dataclass(frozen=True)
class OrderView:
    """The order as PostgreSQL holds it, each store's copy, and its events."""

    order_id: str
    order_number: str
    postgres: ProjectedOrder
    created_at: datetime
    updated_at: datetime
    stores: list[StoreCopy]
    events: list[OrderEvent]


@dataclass(frozen=True)
class Lookup:
    """What the lookup form was given: an order id, or else an order number."""

    order_id: UUID | None
    order_number: str | None


def parse_lookup(text: str) -> Lookup:
    """An order id (a UUID) or an order number; :class:`OrderLookupError` for anything else."""
    given = text.strip()
    if not given:
        raise OrderLookupError("type an order id (a UUID) or an order number")
    try:
        return Lookup(UUID(given), None)
    except ValueError:
        pass
    if not ORDER_NUMBER.fullmatch(given):
        raise OrderLookupError(
            f"{given[:80]!r} is neither an order id (a UUID) nor an order number "
            "(letters, digits, '-' and '_')"
        )
    return Lookup(None, given)


def parse_order_id(text: str) -> UUID:
    """The order id of a page's address; :class:`OrderLookupError` if it is not a UUID."""
    try:
        return UUID(text)
    except ValueError:
        raise OrderLookupError(f"{text[:80]!r} is not an order id (a UUID)") from None


async def order_id_by_number(
    pools: Sequence[asyncpg.Pool], number: str, timeout_seconds: float
) -> UUID:
    """The id of the order numbered ``number``, in whichever database holds it (each asked
    within ``timeout_seconds``); :class:`OrderLookupError` if none does."""
    for pool in pools:
        async with asyncio.timeout(timeout_seconds):
            found: UUID | None = await pool.fetchval(query("console_order_id_by_number"), number)
        if found is not None:
            return found
    raise OrderLookupError(f"no order has the number {number!r}")


async def order_view(
    pools: Sequence[asyncpg.Pool],
    sinks: Mapping[str, Sink],
    order_id: UUID,
    timeout_seconds: float,
) -> OrderView:
    """The order ``order_id`` from the database that holds it, beside each sink's copy (each
    store asked concurrently; each database and store within ``timeout_seconds``);
    :class:`OrderLookupError` if no database holds it."""
    for pool in pools:
        async with asyncio.timeout(timeout_seconds), pool.acquire() as connection:
            row = await connection.fetchrow(query("console_order"), order_id)
            if row is None:
                continue
            events = await read_stream(connection, order_id)
        expected = ProjectedOrder(row["version"], row["status"], row["total"])
        span = OrderSpan(row["created_at"], row["updated_at"])
        latest = events[-1] if events else None
        copies = await asyncio.gather(
            *(
                store_copy(name, sink, str(order_id), expected, span, timeout_seconds)
                if not isinstance(sink, RecordFinder)
                else log_copy(name, sink, latest, timeout_seconds)
                for name, sink in sinks.items()
            )
        )
        return OrderView(
            str(order_id),
            row["order_number"],
            expected,
            row["created_at"],
            row["updated_at"],
            list(copies),
            events,
        )
    raise OrderLookupError(f"no order has the id {str(order_id)!r}")


async def store_copy(
    name: str,
    sink: Sink,
    order_id: str,
    expected: ProjectedOrder,
    span: OrderSpan,
    timeout_seconds: float,
) -> StoreCopy:
    """What sink ``name`` holds of the order, compared with ``expected``."""
    if not isinstance(sink, ReadBack):
        return StoreCopy(name, Standing.NOT_READ_BACK)
    try:
        async with asyncio.timeout(timeout_seconds):
            held = (await read(sink.projected_orders({order_id: span}))).get(order_id)
    except StoreUnreadable as failure:
        return StoreCopy(name, Standing.UNREADABLE, detail=str(failure))
    except TimeoutError:
        return StoreCopy(
            name, Standing.UNREADABLE, detail=f"no answer within {timeout_seconds:g} s"
        )
    return StoreCopy(name, standing(expected, held), held)


async def log_copy(
    name: str, sink: RecordFinder, latest: OrderEvent | None, timeout_seconds: float
) -> StoreCopy:
    """Where log ``name`` holds the record of the order's ``latest`` event (from its history;
    None when the history keeps none)."""
    if latest is None:
        return StoreCopy(name, Standing.NOT_READ_BACK, detail="no event of the order is kept")
    if sink.topic_for("order") is None:
        return StoreCopy(name, Standing.NOT_READ_BACK, detail="orders are not published")
    try:
        async with asyncio.timeout(timeout_seconds):
            found = await read(
                sink.find_record(
                    "order",
                    str(latest.event_id),
                    latest.occurred_at,
                    timeout_seconds=timeout_seconds,
                )
            )
    except StoreUnreadable as failure:
        return StoreCopy(name, Standing.UNREADABLE, detail=str(failure))
    except TimeoutError:
        return StoreCopy(
            name, Standing.UNREADABLE, detail=f"no answer within {timeout_seconds:g} s"
        )
    if found is None:
        return StoreCopy(
            name,
            logged_standing(found),
            detail=f"no record of version {latest.version} (the latest event) within "
            f"{FIND_SCAN_RECORDS:,} records of each partition from its time: not delivered yet, "
            "past the topic's retention, or lost",
        )
    return StoreCopy(
        name,
        logged_standing(found),
        detail=f"{found.topic} · partition {found.partition} · offset {found.offset}",
        record=LoggedRecord(latest.version, found),
    )
