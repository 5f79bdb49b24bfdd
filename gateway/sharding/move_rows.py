"""A moving customer's rows on its shards: locked, read and deleted on the source, written on
the target, and the tombstones the source keeps. The only module that knows the SQL of a move
on a shard (``moves.sql``)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from uuid import UUID

import asyncpg

from gateway.postgres.advisory_locks import AdvisoryLockClass
from gateway.postgres.database import Connection
from gateway.postgres.queries import query


async def lock_customer(connection: Connection, customer_id: UUID) -> list[UUID] | None:
    """In the caller's transaction: lock the customer's row, then its orders' rows (in id
    order); the orders' ids, or ``None`` when the customer is not on this shard.

    New orders of the customer wait (their foreign key takes a share lock of the customer's
    row), and so do transitions and payments of its orders; other customers do not."""
    if await connection.fetchval(query("move_lock_customer"), customer_id) is None:
        return None
    return [row["id"] for row in await connection.fetch(query("move_lock_orders"), customer_id)]


def aggregates_of(customer_id: UUID, order_ids: Sequence[UUID]) -> list[str]:
    """The outbox aggregate ids of a customer's events: its own and its orders'."""
    return [str(customer_id), *(str(order_id) for order_id in order_ids)]


async def has_late_events(connection: Connection, aggregates: Sequence[str]) -> bool:
    """In the locking transaction: whether a transaction that took its id after this one
    wrote events of ``aggregates`` before the locks were granted (the relay cannot deliver
    those while this transaction runs)."""
    return bool(await connection.fetchval(query("move_late_events"), list(aggregates)))


async def blocks_writers(connection: Connection) -> bool:
    """In the locking transaction: whether its locks hold up a transaction that has taken its
    id (which may hold the relay back below the events the pause waits for)."""
    return bool(await connection.fetchval(query("move_blocks_writers")))


async def undelivered_events(connection: Connection, aggregates: Sequence[str]) -> int:
    """How many events of ``aggregates`` some registered sink has not passed yet."""
    count = await connection.fetchval(query("move_undelivered_events"), list(aggregates))
    return int(count)


async def read_customer(
    connection: Connection, customer_id: UUID, order_ids: Sequence[UUID]
) -> str:
    """Every row of the customer and of its orders ``order_ids``, as a JSON document."""
    document: str = await connection.fetchval(
        query("move_read_customer"), customer_id, list(order_ids)
    )
    return document


def row_count(document: str) -> int:
    """How many rows, of every table, a document of ``read_customer`` holds."""
    tables: dict[str, list[object]] = json.loads(document)
    return sum(len(rows) for rows in tables.values())


async def write_customer(connection: Connection, document: str) -> int:
    """Write the rows of ``document`` (``read_customer``'s) on this shard; how many orders."""
    return int(await connection.fetchval(query("move_write_customer"), document))


async def delete_moved(
    connection: Connection,
    customer_id: UUID,
    order_ids: Sequence[UUID],
    target: str,
    move_id: UUID,
    document: str,
) -> None:
    """In the locking transaction: delete the customer's rows (its orders' reservation
    decisions stay until the catalog names the target) and write the tombstones naming
    ``target``, the customer's keeping ``document`` (the rows moved) until the target holds
    them. Writes no events."""
    await connection.fetchval(
        query("move_delete_customer"), customer_id, list(order_ids), target, move_id, document
    )
    await connection.execute(query("move_delete_addresses_and_customer"), customer_id)


async def kept_documents(
    database: asyncpg.Pool | Connection, customer_id: UUID | None = None
) -> list[UUID]:
    """The moves (of ``customer_id``, or everyone's) whose rows this shard's tombstones still
    keep."""
    rows = await database.fetch(query("move_kept_documents"), customer_id)
    return [row["move_id"] for row in rows]


async def document_of(
    database: asyncpg.Pool | Connection, customer_id: UUID, move_id: UUID
) -> str | None:
    """The rows move ``move_id`` took of the customer from this shard, as its tombstone keeps
    them until the target holds them (``None``: gone, or not this move's)."""
    document: str | None = await database.fetchval(query("move_document"), customer_id, move_id)
    return document


async def has_customer(database: asyncpg.Pool | Connection, customer_id: UUID) -> bool:
    """Whether the customer's row is on this shard."""
    return bool(await database.fetchval(query("move_copy_exists"), customer_id))


async def hold_arrival(connection: Connection, move_id: UUID) -> None:
    """In the caller's transaction on the target: the lock of move ``move_id``'s copy,
    waiting for a copy transaction still open."""
    await connection.fetchval(
        query("move_hold_arrival"), AdvisoryLockClass.MOVE_ARRIVAL, str(move_id)
    )


async def try_lock_customer_moves(connection: Connection, customer_id: UUID) -> bool:
    """In the catalog, on a connection kept for it: whether this process may move the customer
    (no other holds the lock); :func:`unlock_customer_moves` lets go."""
    locked = await connection.fetchval(
        query("move_try_lock_customer"), AdvisoryLockClass.CUSTOMER_MOVE, str(customer_id)
    )
    return bool(locked)


async def unlock_customer_moves(connection: Connection, customer_id: UUID) -> None:
    """Let go of :func:`try_lock_customer_moves`'s lock."""
    await connection.fetchval(
        query("move_unlock_customer"), AdvisoryLockClass.CUSTOMER_MOVE, str(customer_id)
    )


async def moved_order_ids(database: asyncpg.Pool | Connection, move_id: UUID) -> list[UUID]:
    """The orders this shard's tombstones say move ``move_id`` took away."""
    return [row["order_id"] for row in await database.fetch(query("move_moved_order_ids"), move_id)]


async def forget_decisions(
    database: asyncpg.Pool | Connection, customer_id: UUID, move_id: UUID
) -> None:
    """Delete this shard's reservation decisions of the orders move ``move_id`` took away and
    are not here again, and the rows its tombstone kept."""
    await database.execute(query("move_forget_decisions"), move_id, customer_id)


async def customer_tombstone(
    database: asyncpg.Pool | Connection, customer_id: UUID
) -> tuple[str, UUID] | None:
    """Where this shard's tombstone says the customer went, and by which move."""
    row = await database.fetchrow(query("move_tombstone_of_customer"), customer_id)
    return (row["to_shard"], row["move_id"]) if row is not None else None


async def order_tombstone(
    database: asyncpg.Pool | Connection, order_id: UUID
) -> tuple[str, UUID] | None:
    """Where this shard's tombstone says the order went, and by which move."""
    row = await database.fetchrow(query("move_tombstone_of_order"), order_id)
    return (row["to_shard"], row["move_id"]) if row is not None else None
