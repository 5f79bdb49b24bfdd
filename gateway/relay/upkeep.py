"""The relay process's background work besides delivery: waking the workers when events are
committed, pruning delivered events and old order history, cancelling orders whose payment
timed out, and the backlog gauges."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

import asyncpg

from gateway import metrics
from gateway.backoff import Backoff
from gateway.configuration.settings import PostgresSettings
from gateway.errors import GatewayError
from gateway.history import store as history
from gateway.payments.recording import expire_due_orders
from gateway.postgres import outbox
from gateway.postgres.advisory_locks import AdvisoryLock
from gateway.postgres.database import Connection, connect
from gateway.postgres.queries import query
from gateway.relay.errors import DATABASE_ERRORS
from gateway.relay.storage import RelayStorage
from gateway.telemetry.tracing import operation

log = logging.getLogger("gateway.relay")

PRUNE_CHUNK = 5_000
SWEEP_CHUNK = 100


async def listen_for_events(
    postgres: PostgresSettings,
    poll_interval_seconds: float,
    backoff: Backoff,
    wake: Callable[[], None],
) -> None:
    """Keep a LISTEN connection on the outbox's channel; wake the workers on every
    notification and after every (re)connect (events may have been missed meanwhile)."""
    attempt = 0
    while True:
        try:
            connection = await connect(postgres)
        except (GatewayError, *DATABASE_ERRORS) as error:
            attempt += 1
            log.warning("cannot LISTEN for outbox events (polling meanwhile): %s", error)
            await asyncio.sleep(backoff.ceiling(attempt))
            continue
        attempt = 0
        closed = asyncio.Event()
        connection.add_termination_listener(lambda _, closed=closed: closed.set())
        try:
            await connection.add_listener(outbox.CHANNEL, lambda *_: wake())
            wake()
            while not closed.is_set() and not connection.is_closed():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(closed.wait(), poll_interval_seconds * 5)
        except DATABASE_ERRORS as error:
            log.warning("lost the LISTEN connection: %s", error)
        finally:
            with contextlib.suppress(*DATABASE_ERRORS):
                await connection.close(timeout=1)


async def prune(storage: RelayStorage, retention_seconds: int) -> int:
    """Delete delivered events older than the retention (unless another relay is at it), in
    chunks; how many were deleted.

    Warns of every sink that no relay serves any more: until it is retired, its positions
    keep every event after them.
    """
    for unserved in await storage.unserved_sinks():
        log.warning("%s", unserved.warning())
    total = 0
    while True:
        deleted = await storage.prune(retention_seconds, PRUNE_CHUNK)
        if deleted is None:
            return total
        total += deleted
        if deleted < PRUNE_CHUNK:
            return total


async def expire_unpaid_orders(pool: asyncpg.Pool, limit: int = SWEEP_CHUNK) -> int:
    """Cancel every pending order whose payment is overdue, returning its units (unless
    another relay is at it), ``limit`` orders per transaction; how many were cancelled."""

    async def expire(connection: Connection) -> int:
        changes = await expire_due_orders(connection, limit)
        for change in changes:
            await outbox.append_order_events(connection, change.events)
        return len(changes)

    return await _in_locked_chunks(pool, AdvisoryLock.PAYMENT_SWEEP, limit, expire)


async def prune_history(pool: asyncpg.Pool, retention_days: int) -> int:
    """Delete order events older than ``retention_days`` (unless another relay is at it), in
    chunks; how many were deleted."""

    async def prune_chunk(connection: Connection) -> int:
        return await history.prune(connection, retention_days, PRUNE_CHUNK)

    return await _in_locked_chunks(pool, AdvisoryLock.HISTORY_PRUNE, PRUNE_CHUNK, prune_chunk)


async def _in_locked_chunks(
    pool: asyncpg.Pool,
    lock: AdvisoryLock,
    chunk: int,
    work: Callable[[Connection], Awaitable[int]],
) -> int:
    """Run ``work`` in a transaction holding ``lock`` until it handles fewer than ``chunk``
    rows (or another process holds the lock); the rows handled."""
    total = 0
    while True:
        async with pool.acquire() as connection, connection.transaction():
            if not await connection.fetchval(query("try_advisory_xact_lock"), lock):
                return total
            done = await work(connection)
        total += done
        if done < chunk:
            return total


async def every(interval_seconds: float, what: str, chore: Callable[[], Awaitable[int]]) -> None:
    """Run ``chore`` every ``interval_seconds``, logging how many rows it handled (``what``).

    A failure is logged and the chore runs again at the next interval: one bad round must
    not end, unseen, a chore the relay's process relies on. Each round is a span (a trace of
    its own) named ``what``.
    """
    while True:
        await asyncio.sleep(interval_seconds)
        try:
            with operation(what):
                done = await chore()
            if done:
                log.info("%s: %d", what, done)
        except DATABASE_ERRORS as error:
            log.warning("%s failed: %s", what, error)
        except Exception:
            log.exception("%s failed", what)


async def publish_backlog(storage: RelayStorage, interval_seconds: float) -> None:
    """Set the backlog gauges of every sink every ``interval_seconds``."""
    while True:
        try:
            for backlog in await storage.backlog():
                metrics.BACKLOG.labels(backlog.sink).set(backlog.events)
                metrics.OLDEST_UNDELIVERED_SECONDS.labels(backlog.sink).set(
                    backlog.oldest_age_seconds or 0.0
                )
        except DATABASE_ERRORS as error:
            log.warning("backlog statistics failed: %s", error)
        await asyncio.sleep(interval_seconds)
