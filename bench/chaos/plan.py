"""What a chaos run does (its plan and fault schedule) and which failures a fault explains."""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass
from typing import Literal, get_args

from support.stores import STORES

FaultKind = Literal[
    "kill-relay",
    "stop-store",
    "restart-postgres",
    "kill-api",
    "stop-shard",
    "switchover",
    "failover",
    "partition-primary",
    "move-customers",
]
FAULT_KINDS: tuple[FaultKind, ...] = get_args(FaultKind)
PRIMARY_MOVES: frozenset[FaultKind] = frozenset({"switchover", "failover", "partition-primary"})
"""The faults that move a PostgreSQL cluster's primary to another node."""

HAPPY_PATH = ("confirmed", "processing", "shipped")
# How long a client keeps retrying one request before it gives up.
RETRY_FOR_SECONDS = 180.0


SEND_AGAIN = frozenset(
    {"urn:fanout:problem:reservation-lapsed", "urn:fanout:problem:request-in-progress"}
)
"""The problems that say nothing was written and the same request, with its key, may be sent
again (sharded mode: a reservation that lapsed before its order was created, and concurrent
requests with one key)."""


def asks_to_send_again(status: int, problem_type: str | None) -> bool:
    """Whether an answer asks the client to send the same request again (rather than being
    its outcome)."""
    return status == 409 and problem_type in SEND_AGAIN


@dataclass(frozen=True)
class Fault:
    """One fault of the schedule: what, ``at`` seconds into the load, for how long."""

    kind: FaultKind
    at: float
    target: str = ""
    seconds: float = 0.0


@dataclass(frozen=True)
class ChaosPlan:
    """What the run does."""

    orders: int
    rate: float
    stores: tuple[str, ...] = STORES
    relays: int = 2
    transition_share: float = 0.5
    in_flight: int = 64
    store_outage_seconds: float = 20.0
    drain_timeout_seconds: float = 900.0
    faults: tuple[Fault, ...] = ()
    shards: tuple[str, ...] = ()
    """Sharded mode: the servers (of ``scripts/services.sh``) of the shards, the catalog on
    ``postgres``; none: one database."""
    reservation_seconds: float = 2.0
    """Sharded mode: how long a reservation holds its units before the sweeper may let it
    lapse (short, so that the placements a killed API leaves half done lapse during the run)."""
    shard_outage_seconds: float = 10.0
    cluster: bool = False
    """The database is on the ``postgres-ha`` cluster of ``scripts/services.sh`` (Patroni): its
    faults move the primary (a switchover, the primary's postmaster killed, the primary cut off
    from the others) rather than restarting one server."""
    partition_seconds: float = 15.0
    """How long the primary stays cut off from the store and the other nodes."""
    cluster_mode: Literal["async", "sync", "strict"] = "sync"
    """The cluster's replication: asynchronous, synchronous (Patroni's ``synchronous_mode``),
    or strictly synchronous (no write without a synchronous standby)."""
    move_seconds: float = 12.0
    """Sharded mode: how long a ``move-customers`` fault goes on moving customers (longer when
    none of its moves was made by then: see :func:`keep_moving`)."""
    movers: int = 2
    """Sharded mode: how many customers a ``move-customers`` fault moves at once (each mover
    one ``fanout shards move`` after another)."""

    @property
    def load_seconds(self) -> float:
        """How long placing the orders takes at the plan's rate."""
        return self.orders / self.rate


MOVE_OVERTIME_SECONDS = 30.0
"""How long a ``move-customers`` fault goes on past its ``move_seconds`` while none of its
moves was made (each may roll back or fail under the other faults)."""


def keep_moving(elapsed: float, move_seconds: float, made: int) -> bool:
    """Whether a ``move-customers`` fault ``elapsed`` seconds in, with ``made`` moves made,
    starts another move: for ``move_seconds``, then on until one was made, for at most
    :data:`MOVE_OVERTIME_SECONDS` more."""
    if elapsed < move_seconds:
        return True
    return made == 0 and elapsed < move_seconds + MOVE_OVERTIME_SECONDS


def fault_schedule(
    plan: ChaosPlan, repeats: int, only: Collection[FaultKind] | None = None
) -> tuple[Fault, ...]:
    """Each fault ``repeats`` times, spread evenly over the load (from 5 % to 80 % of it),
    the kinds interleaved so that no two of a kind follow each other; with ``only``, just the
    faults of those kinds (spread the same way).

    One database: a relay killed, each store stopped, PostgreSQL restarted, the API killed.
    Sharded mode: a relay killed, each shard's server stopped, the API killed, customers moved
    between the shards, the catalog's server restarted."""
    if plan.cluster:
        kinds = cluster_kinds(plan)
    else:
        kinds = sharded_kinds(plan) if plan.shards else single_database_kinds(plan)
    if only is not None:
        kinds = [kind for kind in kinds if kind[0] in only]
    rounds = [kind for _ in range(repeats) for kind in kinds]
    start, end = 0.05 * plan.load_seconds, 0.80 * plan.load_seconds
    step = (end - start) / max(1, len(rounds) - 1)
    return tuple(
        Fault(kind, round(start + index * step, 1), target, seconds)
        for index, (kind, target, seconds) in enumerate(rounds)
    )


def single_database_kinds(plan: ChaosPlan) -> list[tuple[FaultKind, str, float]]:
    """One round of faults over one database: (kind, target, seconds)."""
    kinds: list[tuple[FaultKind, str, float]] = [("kill-relay", "0", 3.0)]
    kinds += [("stop-store", store, plan.store_outage_seconds) for store in plan.stores]
    kinds += [("restart-postgres", "", 0.0), ("kill-api", "", 2.0)]
    if plan.relays > 1:
        kinds.insert(len(plan.stores) // 2 + 1, ("kill-relay", "1", 3.0))
    return kinds


def cluster_kinds(plan: ChaosPlan) -> list[tuple[FaultKind, str, float]]:
    """One round of faults over a PostgreSQL cluster: a switchover, the primary's postmaster
    killed, the primary cut off from the others for ``partition_seconds``, between a relay
    and the API killed."""
    return [
        ("switchover", "", 0.0),
        ("kill-relay", "0", 3.0),
        ("failover", "", 0.0),
        ("kill-api", "", 2.0),
        ("partition-primary", "", plan.partition_seconds),
    ]


def sharded_kinds(plan: ChaosPlan) -> list[tuple[FaultKind, str, float]]:
    """One round of faults in sharded mode: each relay killed, each shard's server stopped,
    the API killed (while a placement holds units), the catalog's server restarted, and, in
    the middle of the round, customers moved between the shards for ``move_seconds`` (with
    two shards or more)."""
    kinds: list[tuple[FaultKind, str, float]] = []
    for number, shard in enumerate(plan.shards):
        kinds.append(("kill-relay", str(number % plan.relays), 3.0))
        kinds.append(("stop-shard", shard, plan.shard_outage_seconds))
        kinds.append(("kill-api", "", 2.0) if number % 2 == 0 else ("restart-postgres", "", 0.0))
    if len(plan.shards) < 2:
        kinds.append(("restart-postgres", "", 0.0))
    else:
        kinds.insert(len(kinds) // 2, ("move-customers", "", plan.move_seconds))
    return kinds


@dataclass
class FaultWindow:
    """When a fault began and ended, and when the gateway was next seen answering, in seconds
    since the load began."""

    kind: FaultKind
    target: str
    began: float
    ended: float | None = None
    settled: float | None = None
    """When the first request sent after the fault ended was answered: until then pools
    reconnect and a restarted process warms up, however long a busy machine takes."""
    unavailable_seconds: float | None = None
    """From the first request that failed during the fault to the first answer after it."""
    resume_seconds: float | None = None
    """A move of the primary: from the first order acknowledged after it to that order in a
    store (how soon the relays deliver again)."""
    primary: tuple[str, str] | None = None
    """A move of the primary: the node that was the primary, and the one that is after."""


@dataclass(frozen=True)
class FailedAttempt:
    """A request attempt that failed: how (``HTTP 503``, ``ConnectError``, ...), when it was
    sent and when it failed, in seconds since the load began."""

    kind: str
    started: float
    ended: float


def settled_at(fault_ended: float, successes: Iterable[tuple[float, float]]) -> float | None:
    """When the gateway answered again after a fault: the earliest end of a successful request
    (``(sent, answered)``) sent once the fault had ended; ``None`` if none was."""
    answered = [done for sent, done in successes if sent >= fault_ended]
    return min(answered, default=None)


def unavailable_for(window: FaultWindow, failures: Iterable[FailedAttempt]) -> float | None:
    """How long requests failed during ``window``: from the start of the first attempt that
    failed while it was in force to the first answer after it (its ``settled``); None if
    none failed or it never settled."""
    if window.settled is None:
        return None
    started = [
        f.started for f in failures if f.ended >= window.began and f.started <= window.settled
    ]
    return round(window.settled - min(started), 2) if started else None


def explained(failure: FailedAttempt, windows: list[FaultWindow]) -> bool:
    """Whether ``failure`` is what a fault in force while it was in flight causes: a 503 with
    Retry-After while PostgreSQL (or the catalog) restarts or a shard is down, a lost or
    refused connection while the API is down (or restarts after PostgreSQL did). A fault is in
    force from its start until the gateway is seen answering after it. Nothing else may fail:
    customers being moved explain nothing (their requests wait for the move's pause)."""
    for window in windows:
        until = window.settled if window.settled is not None else float("inf")
        if not (failure.ended >= window.began and failure.started <= until):
            continue
        kind = failure.kind
        if window.kind == "restart-postgres" and (kind == "HTTP 503" or kind.endswith("Error")):
            return True
        if window.kind == "kill-api" and kind.endswith("Error"):
            return True
        # The API answers for the shard that is down, or while the cluster has no primary it
        # can reach, with 503 and Retry-After.
        if (window.kind == "stop-shard" or window.kind in PRIMARY_MOVES) and kind == "HTTP 503":
            return True
    return False
