"""Moving one customer, with everything its shard holds for it, to another shard, online.

The protocol (docs/how-to/sharding.md, "Moving a customer"):

1. record the move in the catalog (``shard_moves``; one unfinished move per customer), holding
   the catalog's lock of the customer's moves for the whole move (one process at a time);
2. pause this customer only: in the source's transaction S, lock its row and its orders' rows;
3. read its rows in S;
4. wait until every sink has passed every source event of the customer and its orders, at most
   the pause timeout (else roll back and record ``rolled_back``);
5. write the rows on the target in a transaction T, left open; then, in S, delete them from the
   source and write the tombstones (the customer's keeping the rows), and commit S: **S's
   commit is the move's commit point**; then commit T. Nothing reads or writes the copy before
   the source gave the customer up: a request that follows the tombstone meanwhile waits for T
   (:meth:`ShardMover.ensure_arrived`), and when the move was cut off before T's commit, that
   request, or the move's resumption, writes the copy from the tombstone;
6. in the catalog, name the target in the directory and in the orders' reservations, record
   ``done``; then delete the source's reservation decisions of the moved orders.

An interrupted move is finished by :meth:`ShardMover.resume`: forward when the source holds
this move's tombstone, else back (the target never committed a copy: nothing to delete).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from enum import StrEnum
from uuid import UUID, uuid4

import asyncpg

from gateway.errors import CustomerMoving, MoveRefused, NotFound
from gateway.postgres.database import Connection
from gateway.postgres.queries import query
from gateway.relay.errors import DATABASE_ERRORS
from gateway.sharding import move_records, move_rows
from gateway.sharding.move_records import ShardMove
from gateway.sharding.move_rules import (
    DeliveryWait,
    MoveState,
    Recovery,
    catalog_step_retry,
    delivery_wait,
    move_refusal,
    recovery_of,
)
from gateway.sharding.postgres_saga_storage import lock_timeout_setting

log = logging.getLogger("gateway.sharding.moves")

DEFAULT_PAUSE_TIMEOUT = 5.0
"""Seconds a move may pause its customer before it gives up (``--pause-timeout``)."""

ARRIVAL_WAIT = DEFAULT_PAUSE_TIMEOUT
"""Seconds a request that followed a tombstone waits for the move's copy to commit."""

IDLE_MARGIN = 10.0
"""Seconds beyond the pause timeout the server lets a move's S or T sit idle in its
transaction before it ends it (a mover that stalls must not hold the customer's rows, or the
target's relay horizon, for ever)."""

DELIVERY_POLL_SECONDS = 0.02
"""How often the pause asks the source whether the customer's events were delivered."""


class MoveStep(StrEnum):
    """The points of a move a hook is called at (a test's crash injection)."""

    RECORDED = "recorded"
    LOCKED = "locked"
    DELIVERED = "delivered"
    TARGET_WRITTEN = "target_written"
    SOURCE_DELETED = "source_deleted"
    SOURCE_COMMITTED = "source_committed"
    TARGET_COMMITTED = "target_committed"
    CATALOG_COMMITTED = "catalog_committed"
    CLEANED = "cleaned"


StepHook = Callable[[MoveStep], Awaitable[None]]
"""Called at each :class:`MoveStep`; what it raises goes through, as a crash would."""


class MoveAborted(Exception):
    """The pause gave up before the source committed; nothing of the move is kept."""


class _LateEvents(Exception):
    """Events the pause cannot wait for: written by a transaction younger than the pause's own
    while it took its locks, which the relay cannot read while the pause runs; or held back
    by an older transaction that waits for the pause's locks (a placement of the customer
    between its statements), which the relay cannot pass either. The pause starts over (until
    its deadline), letting that transaction through."""


@dataclass(frozen=True)
class MoveResult:
    """A move as it ended: its record, how long its customer was paused (``None``: the
    source never committed it), and how many orders and rows (of every table) moved."""

    move: ShardMove
    pause_seconds: float | None = None
    orders: int = 0
    rows: int = 0


async def _no_hook(step: MoveStep) -> None:
    return None


async def _close(session: asyncpg.Connection) -> None:
    """Close ``session``, or drop it when closing fails or is cancelled."""
    try:
        await session.close(timeout=5)
    except DATABASE_ERRORS:
        session.terminate()
    except BaseException:
        session.terminate()
        raise


class ShardMover:
    """Moves customers between the shards of one catalog."""

    def __init__(
        self,
        catalog: asyncpg.Pool,
        shards: Mapping[str, asyncpg.Pool],
        *,
        open_session: Callable[[], Awaitable[asyncpg.Connection]],
        on_switched: Callable[[UUID, str], None] | None = None,
        hook: StepHook | None = None,
    ) -> None:
        """``open_session``: a new connection to the catalog, outside ``catalog``'s pool, for
        the lock of a customer's moves."""
        self._catalog = catalog
        self._open_session = open_session
        self._shards = dict(shards)
        self._on_switched = on_switched
        self._hook = hook or _no_hook

    async def move(
        self, customer_id: UUID, target: str, *, pause_timeout: float = DEFAULT_PAUSE_TIMEOUT
    ) -> MoveResult:
        """Move the customer to shard ``target``. An unfinished earlier move of the customer is
        finished first. ``MoveRefused`` when the move cannot start (another process moving
        the customer included); a result in state ``rolled_back`` (with ``last_error``) when it
        gave up, ``done`` when it moved."""
        async with self._moving(customer_id):
            return await self._move(customer_id, target, pause_timeout)

    async def resume(self, move: ShardMove, *, reason: str | None = None) -> ShardMove:
        """Finish an interrupted move: forward when the source committed it, else back. A
        move already ``done`` gets its last step again (the source's leftover decisions of
        the moved orders deleted), in case the process died before it. ``MoveRefused`` while
        another process moves the customer."""
        async with self._moving(move.customer_id):
            return await self._resume(move, reason=reason)

    async def cleanups_left(self, customer_id: UUID | None = None) -> list[ShardMove]:
        """The ``done`` moves (of ``customer_id``, or everyone's) whose last step (the
        source's leftover decisions and kept rows deleted) has not run: the process died right
        after the catalog's step."""
        left: list[ShardMove] = []
        for pool in self._shards.values():
            for move_id in await move_rows.kept_documents(pool, customer_id):
                move = await move_records.by_id(self._catalog, move_id)
                if move is not None and move.state is MoveState.DONE:
                    left.append(move)
        return left

    @asynccontextmanager
    async def _moving(self, customer_id: UUID) -> AsyncIterator[None]:
        """Hold the catalog's lock of the customer's moves (``MoveRefused`` when another
        process holds it), on a session of its own: it ends with the session, so neither a
        cancelled move nor a pool's spare connection can keep it, and the move's own catalog
        work never waits for a pooled connection this one holds."""
        session = await self._open_session()
        try:
            if not await move_rows.try_lock_customer_moves(session, customer_id):
                raise MoveRefused(
                    f"another process is moving customer {customer_id}; try again once it "
                    "finished (fanout shards moves lists it)"
                )
            yield
        finally:
            # Unlocked before the session closes, so that the next move finds it free at once;
            # a session already gone released it, and its error must not hide the move's.
            with contextlib.suppress(*DATABASE_ERRORS):
                await move_rows.unlock_customer_moves(session, customer_id)
            await _close(session)

    async def _move(self, customer_id: UUID, target: str, pause_timeout: float) -> MoveResult:
        earlier = await move_records.unfinished_of(self._catalog, customer_id)
        if earlier is not None:
            await self._resume(earlier)
        # No shard keeps the rows of a move that is over once the customer moves on.
        for done in await self.cleanups_left(customer_id):
            await self._resume(done)
        source = await self._catalog.fetchval(query("directory_shard_of"), customer_id)
        if source is None:
            raise NotFound("customer", customer_id, field="customer_id")
        refusal = move_refusal(source, target, self._shards)
        if refusal is not None:
            raise MoveRefused(refusal)
        move = ShardMove(uuid4(), customer_id, source, target, MoveState.STARTED)
        if not await move_records.record(self._catalog, move):
            raise MoveRefused(f"customer {customer_id} has another unfinished move")
        await self._hook(MoveStep.RECORDED)
        try:
            pause, orders, rows = await self._copy_and_fence(move, pause_timeout)
        except MoveAborted as aborted:
            return MoveResult(await self._roll_back(move, str(aborted)))
        except DATABASE_ERRORS as error:
            log.warning("move %s failed, finishing it: %s", move.id, error)
            return MoveResult(await self._resume(move, reason=f"{type(error).__name__}: {error}"))
        await move_records.set_state(self._catalog, move.id, MoveState.FENCED)
        finished = await self._roll_forward(move)
        return MoveResult(finished, pause, orders, rows)

    async def _resume(self, move: ShardMove, *, reason: str | None = None) -> ShardMove:
        current = await move_records.by_id(self._catalog, move.id) or move
        if current.state is MoveState.DONE:
            await move_rows.forget_decisions(
                self._shards[current.source], current.customer_id, current.id
            )
        if current.state.finished:
            return current
        source = self._shards[current.source]
        async with source.acquire() as connection, connection.transaction():
            await connection.execute(query("set_lock_timeout"), lock_timeout_setting(30.0))
            # Locking the customer's row waits for a source transaction still committing.
            present = await move_rows.lock_customer(connection, current.customer_id)
            tombstone = await move_rows.customer_tombstone(connection, current.customer_id)
            fenced_by = tombstone[1] if tombstone is not None else None
            decision = recovery_of(current.state, present is not None, fenced_by, current.id)
            if decision is Recovery.ROLL_BACK:
                return await self._roll_back(current, reason or "resumed: the source never moved")
        if decision is Recovery.ROLL_FORWARD:
            return await self._roll_forward(current)
        if decision is Recovery.GIVE_UP:
            why = (
                f"customer {current.customer_id} is on neither side of the move at {current.source}"
            )
            await move_records.set_state(self._catalog, current.id, MoveState.ROLLED_BACK, why)
            return await move_records.by_id(self._catalog, current.id) or current
        return current

    async def _copy_and_fence(
        self, move: ShardMove, pause_timeout: float
    ) -> tuple[float, int, int]:
        """Steps 2 to 5: how long the customer was paused, and how many orders and rows
        moved."""
        deadline = time.monotonic() + pause_timeout
        async with (
            self._shards[move.source].acquire() as source,
            self._shards[move.target].acquire() as target,
        ):
            while time.monotonic() < deadline:
                try:
                    return await self._pause(source, target, move, deadline, pause_timeout)
                except _LateEvents:
                    continue
        raise MoveAborted(f"the customer's events kept coming for {pause_timeout} s")

    async def _pause(
        self,
        source: Connection,
        target: Connection,
        move: ShardMove,
        deadline: float,
        pause_timeout: float,
    ) -> tuple[float, int, int]:
        copy = target.transaction()
        try:
            paused_at, orders, rows = await self._pause_until_source_commits(
                source, target, copy, move, deadline, pause_timeout
            )
        except BaseException:
            if target.is_in_transaction():
                # A target that stopped answering ends T itself.
                with contextlib.suppress(*DATABASE_ERRORS):
                    await copy.rollback()
            raise
        await copy.commit()
        # The customer's requests that followed the tombstone waited for this commit.
        paused = time.monotonic() - paused_at
        await self._hook(MoveStep.TARGET_COMMITTED)
        return paused, orders, rows

    async def _pause_until_source_commits(
        self,
        source: Connection,
        target: Connection,
        copy: asyncpg.transaction.Transaction,
        move: ShardMove,
        deadline: float,
        pause_timeout: float,
    ) -> tuple[float, int, int]:
        """Steps 2 to 5 up to S's commit, T (``copy``) started and left open: when the pause
        began, and how many orders and rows moved."""
        async with source.transaction():
            remaining = max(0.001, deadline - time.monotonic())
            await source.execute(query("set_lock_timeout"), lock_timeout_setting(remaining))
            idle = lock_timeout_setting(pause_timeout + IDLE_MARGIN)
            await source.execute(query("set_idle_timeout"), idle)
            paused_at = time.monotonic()
            try:
                order_ids = await move_rows.lock_customer(source, move.customer_id)
            except asyncpg.LockNotAvailableError as error:
                raise MoveAborted(
                    f"the customer's rows stayed locked for {pause_timeout} s"
                ) from error
            if order_ids is None:
                raise MoveAborted(f"customer {move.customer_id} is not on shard {move.source}")
            aggregates = move_rows.aggregates_of(move.customer_id, order_ids)
            if await move_rows.has_late_events(source, aggregates):
                raise _LateEvents()
            await self._hook(MoveStep.LOCKED)
            document = await move_rows.read_customer(source, move.customer_id, order_ids)
            await self._await_delivery(source, aggregates, deadline, pause_timeout)
            await self._hook(MoveStep.DELIVERED)
            await copy.start()
            await target.execute(query("set_idle_timeout"), idle)
            remaining = max(0.001, deadline - time.monotonic())
            await target.execute(query("set_lock_timeout"), lock_timeout_setting(remaining))
            await move_rows.hold_arrival(target, move.id)
            orders = await move_rows.write_customer(target, document)
            await self._hook(MoveStep.TARGET_WRITTEN)
            await move_rows.delete_moved(
                source, move.customer_id, order_ids, move.target, move.id, document
            )
            await self._hook(MoveStep.SOURCE_DELETED)
        await self._hook(MoveStep.SOURCE_COMMITTED)
        return paused_at, orders, move_rows.row_count(document)

    @staticmethod
    async def _await_delivery(
        source: Connection, aggregates: list[str], deadline: float, pause_timeout: float
    ) -> None:
        """Step 4: return once every sink passed every event of ``aggregates`` on the source;
        ``MoveAborted`` at ``deadline``."""
        while True:
            undelivered = await move_rows.undelivered_events(source, aggregates)
            wait = delivery_wait(undelivered, time.monotonic(), deadline)
            if wait is DeliveryWait.DELIVERED:
                return
            if wait is DeliveryWait.TIMED_OUT:
                raise MoveAborted(
                    f"{undelivered} event(s) of the customer not delivered to every sink "
                    f"within the pause timeout ({pause_timeout} s)"
                )
            if await move_rows.blocks_writers(source):
                raise _LateEvents()
            await asyncio.sleep(DELIVERY_POLL_SECONDS)

    async def _roll_forward(self, move: ShardMove) -> ShardMove:
        """Step 6 (after the target's copy, written from the source's tombstone when the move
        was cut off before T's commit): the catalog names the target; then the source forgets
        the decisions."""
        source = self._shards[move.source]
        await self._arrive(move)
        order_ids = await move_rows.moved_order_ids(source, move.id)
        started = time.monotonic()
        while True:
            try:
                await self._switch_catalog(move, order_ids)
                break
            except asyncpg.UniqueViolationError as error:
                waited = time.monotonic() - started
                delay = catalog_step_retry(waited)
                why = (
                    f"the catalog step waits for a placement holding a moved order's "
                    f"idempotency key on {move.target} ({error.constraint_name})"
                )
                await move_records.set_state(self._catalog, move.id, MoveState.FENCED, why)
                if delay is None:
                    raise MoveRefused(
                        f"move {move.id}: {why} for {waited:.1f} s; the customer is on "
                        f"{move.target}: finish the move with fanout shards move --resume"
                    ) from error
                await asyncio.sleep(delay)
        if self._on_switched is not None:
            self._on_switched(move.customer_id, move.target)
        await self._hook(MoveStep.CATALOG_COMMITTED)
        await move_rows.forget_decisions(source, move.customer_id, move.id)
        await self._hook(MoveStep.CLEANED)
        return await move_records.by_id(self._catalog, move.id) or move

    async def _switch_catalog(self, move: ShardMove, order_ids: list[UUID]) -> None:
        """Name the target in the directory and in the moved orders' reservations, and record
        ``done``, in one catalog transaction."""
        async with self._catalog.acquire() as catalog, catalog.transaction():
            switched = await catalog.fetchval(
                query("move_switch_directory"), move.customer_id, move.source, move.target
            )
            if switched is None:
                raise MoveRefused(
                    f"the directory names neither {move.source} nor {move.target} for customer "
                    f"{move.customer_id}"
                )
            await catalog.execute(query("move_switch_reservations"), order_ids, move.target)
            await move_records.set_state(catalog, move.id, MoveState.DONE)

    async def ensure_arrived(self, move_id: UUID, *, wait: float | None = None) -> None:
        """For a request that followed move ``move_id``'s tombstone to its target and found
        nothing there: return once the target's copy is committed (waiting at most ``wait``
        seconds for a T still open), writing it from the source's tombstone when the move was
        cut off between the source's commit and T's (``wait``: ``ARRIVAL_WAIT`` unless
        given). ``CustomerMoving`` when T stays open."""
        move = await move_records.by_id(self._catalog, move_id)
        if move is None or move.state.finished:
            # A finished move's copy committed long ago (or never will, rolled back).
            return
        try:
            lock_wait = ARRIVAL_WAIT if wait is None else wait
            await self._arrive(move, lock_wait=lock_wait, required=False)
        except asyncpg.LockNotAvailableError:
            raise CustomerMoving(move.customer_id) from None

    async def _arrive(
        self, move: ShardMove, *, lock_wait: float | None = None, required: bool = True
    ) -> None:
        """Make sure the target holds the customer: T committed, or the copy written now from
        the rows the source's tombstone kept (only ever after the source's commit: the
        tombstone is written by it). ``required``: ``MoveRefused`` when neither side has
        them."""
        async with self._shards[move.target].acquire() as target, target.transaction():
            if lock_wait is not None:
                await target.execute(query("set_lock_timeout"), lock_timeout_setting(lock_wait))
            await move_rows.hold_arrival(target, move.id)
            if await move_rows.has_customer(target, move.customer_id):
                return
            if not required:
                # Only with the copy's lock held can nobody else finish the move meanwhile: a
                # move finished since it was read is not this request's to write.
                now = await move_records.by_id(self._catalog, move.id)
                if now is None or now.state.finished:
                    return
            source = self._shards[move.source]
            document = await move_rows.document_of(source, move.customer_id, move.id)
            if document is None:
                if not required:
                    return
                raise MoveRefused(
                    f"move {move.id}: shard {move.source} keeps no rows of customer "
                    f"{move.customer_id} and shard {move.target} holds none"
                )
            await move_rows.write_customer(target, document)
            log.warning(
                "move %s: customer %s written on %s from %s's tombstone (the move was cut off "
                "between the two commits)",
                move.id,
                move.customer_id,
                move.target,
                move.source,
            )

    async def _roll_back(self, move: ShardMove, reason: str) -> ShardMove:
        """Record ``rolled_back``. Runs only while the source holds the customer and cannot
        commit the move (the caller's lock, or the move's own transaction rolled back); the
        target's copy only ever commits after the source's, so there is none to delete."""
        await move_records.set_state(self._catalog, move.id, MoveState.ROLLED_BACK, reason)
        log.warning("move %s of customer %s rolled back: %s", move.id, move.customer_id, reason)
        return await move_records.by_id(self._catalog, move.id) or move
