"""The decisions of moving a customer between shards, as small functions of what is known.

A move's commit point is the source shard's transaction that deletes the customer and writes
its tombstones (``moved_customers``, ``moved_orders``); everything else follows from whether
that transaction committed.
"""

from __future__ import annotations

from collections.abc import Collection
from enum import StrEnum
from uuid import UUID

MAX_HOPS = 4
"""How many tombstones a request follows before it gives up (a chain A -> B -> C is two)."""


class MoveState(StrEnum):
    """Where a move stands, as the catalog's ``shard_moves`` records it."""

    STARTED = "started"
    """Recorded; the target may hold a copy, never committed before the source's commit."""
    FENCED = "fenced"
    """The source committed the move (deleted the customer, wrote its tombstones); the target's
    copy may still be to write from the tombstone."""
    DONE = "done"
    """The catalog names the target: directory and reservations."""
    ROLLED_BACK = "rolled_back"
    """The customer stays on the source; nothing of the move is left on the target."""

    @property
    def finished(self) -> bool:
        """Whether nothing is left to do for the move."""
        return self in (MoveState.DONE, MoveState.ROLLED_BACK)


class Recovery(StrEnum):
    """What finishing an interrupted move does."""

    ROLL_FORWARD = "roll_forward"
    """The source committed: make the catalog follow."""
    ROLL_BACK = "roll_back"
    """The source did not commit: delete the target's copy, if any."""
    NOTHING = "nothing"
    """The move is finished already."""
    GIVE_UP = "give_up"
    """The source holds neither the customer nor this move's tombstone: record the move as
    rolled back and touch no shard (whatever the target holds is not this move's to delete)."""


def recovery_of(
    state: MoveState, on_source: bool, fenced_by: UUID | None, move_id: UUID
) -> Recovery:
    """How an unfinished move ``move_id`` is finished, given its recorded ``state``, whether
    the source holds the customer's row (``on_source``) and the move named by the source's
    tombstone of the customer (``fenced_by``; ``None``: none).

    Only the source's tombstone of *this* move says the source committed it: a tombstone of an
    earlier move (the customer came back since) does not. The recorded state is only a hint,
    since a process can die between a commit and the record of it.
    """
    if state.finished:
        return Recovery.NOTHING
    if on_source:
        return Recovery.ROLL_BACK
    if fenced_by == move_id:
        return Recovery.ROLL_FORWARD
    return Recovery.GIVE_UP


def follow_tombstone(
    moved_to: str | None, hops: int, known: Collection[str], max_hops: int = MAX_HOPS
) -> str | None:
    """Where a request that found no row on a shard goes next: the shard the tombstone names
    (``moved_to``), or ``None`` for "not found": no tombstone, a shard this gateway does not
    know, or ``hops`` tombstones followed already (a cycle or a chain too long)."""
    if moved_to is None or moved_to not in known or hops >= max_hops:
        return None
    return moved_to


CATALOG_STEP_PATIENCE = 5.0
"""Seconds the catalog step of a move tries again while a reservation held for the same
idempotency key on the target keeps it from naming the target."""


def catalog_step_retry(waited: float, patience: float = CATALOG_STEP_PATIENCE) -> float | None:
    """How long the catalog step waits before its next try, after ``waited`` seconds of tries
    that found a reservation held for a moved order's idempotency key on the target (a retry of
    the same request that followed the tombstone, which gives its reservation back once it
    finds the moved key): doubling from 20 ms, at most half a second; ``None``: give up."""
    if waited >= patience:
        return None
    return min(0.5, max(0.02, waited), patience - waited)


class DeliveryWait(StrEnum):
    """Where the wait for the source's events to reach every sink stands."""

    DELIVERED = "delivered"
    WAIT = "wait"
    TIMED_OUT = "timed_out"


def delivery_wait(undelivered: int, now: float, deadline: float) -> DeliveryWait:
    """Whether the moving customer's events have all reached every sink (``undelivered``
    events some sink has not passed), or the move waits on, or gives up at ``deadline``."""
    if undelivered == 0:
        return DeliveryWait.DELIVERED
    if now >= deadline:
        return DeliveryWait.TIMED_OUT
    return DeliveryWait.WAIT


def move_refusal(source: str, target: str, shards: Collection[str]) -> str | None:
    """Why a move from ``source`` to ``target`` cannot start (``None``: it can)."""
    if target not in shards:
        return f"shard {target!r} is not configured (shards: {', '.join(sorted(shards))})"
    if source not in shards:
        return f"the customer's shard {source!r} is not configured"
    if source == target:
        return f"the customer is on shard {target!r} already"
    return None
