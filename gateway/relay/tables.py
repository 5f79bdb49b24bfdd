"""The relay's own tables: positions and leases per sink and partition, relay instances,
and dead letters. The only module that knows their SQL.

Invariant kept here: a position moves only in the transaction that checks its lease is still
held by the relay moving it (``commit_batch``), together with the batch's dead letters.
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple
from uuid import UUID

import asyncpg

from gateway.configuration.secrets import redact_url
from gateway.errors import SinkInUse, UnknownSink
from gateway.postgres.database import Connection, fetch_required
from gateway.postgres.outbox import PARTITION_COUNT, StoredEvent, envelope_of
from gateway.postgres.queries import query
from gateway.relay.sessions import SessionCheck

Position = tuple[int, int]
"""``(txid, id)`` of the last event passed: the order the relay reads the outbox in."""


class Move(NamedTuple):
    """A partition's position moved forward by a batch, and how many events it delivered."""

    position: Position
    delivered: int
    since: Position | None = None
    """Where the mover read the position (the move is refused if it stands elsewhere);
    ``None``: from wherever it stands."""


async def register_sink(connection: Connection, sink: str, *, from_beginning: bool) -> None:
    """Create the sink's positions if it has none: before every event, or at "now"."""
    await connection.execute(query("register_sink"), sink, from_beginning, PARTITION_COUNT)


async def positions(
    connection: Connection, sink: str, partitions: Sequence[int]
) -> dict[int, Position]:
    """Where the sink stands in each of ``partitions``."""
    rows = await connection.fetch(query("sink_positions"), sink, list(partitions))
    return {row["partition"]: (row["position_txid"], row["position_id"]) for row in rows}


async def heartbeat(
    connection: Connection,
    instance: str,
    hostname: str,
    pid: int,
    stalled_sinks: Sequence[str] = (),
) -> None:
    """Record that relay ``instance`` is alive, and the sinks it has stalled on."""
    await connection.execute(
        query("heartbeat_instance"), instance, hostname, pid, sorted(stalled_sinks)
    )


async def live_instances(connection: Connection, ttl_seconds: float) -> dict[str, frozenset[str]]:
    """The relays that sent a heartbeat within ``ttl_seconds``, by id (forgetting the others),
    each with the sinks it has stalled on."""
    rows = await connection.fetch(query("live_instances"), ttl_seconds)
    return {row["id"]: frozenset(row["stalled_sinks"]) for row in rows}


async def forget_instance(connection: Connection, instance: str) -> None:
    """Remove a relay that is shutting down."""
    await connection.execute(query("forget_instance"), instance)


async def record_relay_session(
    connection: Connection, instance: str, hostname: str, pid: int
) -> None:
    """Record the session of ``connection`` as relay ``instance``'s liveness session."""
    await connection.execute(query("record_relay_session"), instance, hostname, pid)


async def reap_dead_relays(
    connection: Connection, instance: str, ttl_seconds: float
) -> tuple[SessionCheck, bool]:
    """On relay ``instance``'s liveness connection: delete the relays whose session ended and
    release their leases; what was found, and whether ``connection``'s session is still the
    one recorded for ``instance``."""
    row = await fetch_required(connection, query("reap_dead_relays"), instance, ttl_seconds)
    return SessionCheck(frozenset(row["reaped"]), frozenset(row["live"])), row["recorded"]


async def renew_leases(
    connection: Connection, sink: str, owner: str, ttl_seconds: float
) -> set[int]:
    """Extend every lease ``owner`` holds on ``sink``; return those partitions."""
    rows = await connection.fetch(query("renew_leases"), sink, owner, ttl_seconds)
    return {row["partition"] for row in rows}


async def renew_instance_leases(
    connection: Connection, owner: str, ttl_seconds: float, except_sinks: Sequence[str] = ()
) -> None:
    """Extend every lease ``owner`` holds, on every sink but ``except_sinks`` (the relay's
    heartbeat does this)."""
    await connection.execute(query("renew_instance_leases"), owner, ttl_seconds, list(except_sinks))


async def claim_leases(
    connection: Connection, sink: str, owner: str, partitions: Sequence[int], ttl_seconds: float
) -> set[int]:
    """Take those of ``partitions`` of ``sink`` that no live lease covers; return them."""
    rows = await connection.fetch(query("claim_leases"), sink, owner, list(partitions), ttl_seconds)
    return {row["partition"] for row in rows}


async def release_leases(
    connection: Connection, sink: str, owner: str, partitions: Sequence[int]
) -> None:
    """Give up ``owner``'s leases on ``partitions`` so another relay can take them at once."""
    await connection.execute(query("release_leases"), sink, owner, list(partitions))


async def unowned_partitions(connection: Connection, sink: str) -> int:
    """How many partitions of ``sink`` no live lease covers."""
    count: int = await connection.fetchval(query("unowned_partitions"), sink)
    return count


@dataclass(frozen=True)
class DeadLetter:
    """An event a sink gave up on, with why."""

    event: StoredEvent
    reason: str
    error: str
    attempts: int


class _LeaseLost(Exception):
    """Raised inside the commit transaction to roll it back."""


async def commit_batch(
    connection: Connection,
    sink: str,
    owner: str,
    moves: Mapping[int, Move],
    dead: Sequence[DeadLetter],
    server_run: datetime.datetime | None = None,
) -> bool:
    """Record a finished batch in one transaction: dead letters, then positions moved forward.

    The commit does not wait for PostgreSQL to flush it to disk: a crash can lose the last few
    commits, which only means their events are delivered (or dead-lettered) once more.

    Returns False, having written nothing, if ``owner`` no longer holds every lease it moves,
    a position it moves no longer stands where the move says it read it, or the server is not
    on ``server_run`` (the run the batch was read from; None: any).
    """
    try:
        async with connection.transaction():
            await connection.execute(query("commit_without_flush"))
            if (
                server_run is not None
                and not moves
                and not await connection.fetchval(query("on_server_run"), server_run)
            ):
                raise _LeaseLost
            if dead:
                await connection.executemany(
                    query("insert_dead_letter"), [_dead_letter_row(sink, d) for d in dead]
                )
            if moves:
                partitions = list(moves)
                moved = await connection.fetch(
                    query("advance_positions"),
                    sink,
                    partitions,
                    [moves[p].position[0] for p in partitions],
                    [moves[p].position[1] for p in partitions],
                    [moves[p].delivered for p in partitions],
                    owner,
                    [_since(moves[p])[0] for p in partitions],
                    [_since(moves[p])[1] for p in partitions],
                    server_run,
                )
                if len(moved) != len(partitions):
                    raise _LeaseLost
    except _LeaseLost:
        return False
    return True


def _since(move: Move) -> tuple[int | None, int | None]:
    return move.since if move.since is not None else (None, None)


def _dead_letter_row(sink: str, letter: DeadLetter) -> tuple[object, ...]:
    envelope = letter.event.envelope
    return (
        sink,
        letter.event.id,
        envelope.event_id,
        envelope.aggregate_type,
        envelope.aggregate_id,
        envelope.version,
        envelope.event_type,
        envelope.payload,
        envelope.headers,
        envelope.occurred_at,
        letter.reason,
        redact_url(letter.error),
        letter.attempts,
    )


async def record_retrying(
    connection: Connection,
    sink: str,
    owner: str,
    retrying: Mapping[int, int],
    error: str | None,
) -> None:
    """Show in ``fanout status`` how many events of ``sink`` wait for a retry.

    ``retrying`` maps each partition ``owner`` holds to the number of its events waiting.
    """
    partitions = list(retrying)
    await connection.execute(
        query("record_retrying"),
        sink,
        partitions,
        [retrying[p] for p in partitions],
        error and redact_url(error),
        owner,
    )


async def list_dead_letters(
    connection: Connection, sink: str | None, limit: int
) -> list[dict[str, Any]]:
    """Unresolved dead letters, oldest first."""
    rows = await connection.fetch(query("list_dead_letters"), sink, limit)
    return [dict(row) for row in rows]


async def request_replay(connection: Connection, sink: str, event_id: UUID | None) -> int:
    """Ask relays to deliver a sink's dead letters again (one, or all with ``None``)."""
    rows = await connection.fetch(query("request_replay"), sink, event_id)
    return len(rows)


@dataclass(frozen=True)
class Replay:
    """A dead letter whose replay was requested."""

    dead_letter_id: int
    event: StoredEvent
    attempts: int


async def claim_replays(
    connection: Connection, sink: str, owner: str, limit: int, ttl_seconds: float
) -> list[Replay]:
    """Claim up to ``limit`` requested replays of ``sink`` for ``ttl_seconds``."""
    rows = await connection.fetch(query("claim_replays"), sink, limit, owner, ttl_seconds)
    return [
        Replay(
            row["id"],
            StoredEvent(row["outbox_id"], 0, 0, envelope_of(row, row["outbox_id"])),
            row["attempts"],
        )
        for row in rows
    ]


async def finish_replays(
    connection: Connection,
    owner: str,
    delivered: Sequence[Replay],
    failed: Sequence[tuple[Replay, str, bool]],
) -> None:
    """Mark replays delivered, or record their failure (``True``: try again later); each
    dead letter found by its id and its event's id, while ``owner`` claims it."""
    if delivered:
        await connection.execute(
            query("mark_replayed"),
            [r.dead_letter_id for r in delivered],
            [r.event.envelope.event_id for r in delivered],
            owner,
        )
    if failed:
        await connection.execute(
            query("replay_failed"),
            [f[0].dead_letter_id for f in failed],
            [f[0].event.envelope.event_id for f in failed],
            [f[1] for f in failed],
            [f[2] for f in failed],
            owner,
        )


@dataclass(frozen=True)
class SinkTotals:
    """Counters of one sink across its partitions, and whether any relay still serves it."""

    sink: str
    delivered: int
    retrying: int
    dead_lettered: int
    relays: int
    last_error: str | None
    served: bool
    """Whether a live lease covers one of its partitions."""
    unserved_seconds: float
    """How long since a relay last held a lease on it (0 while served)."""

    def warning(self) -> str:
        """What an operator should know of an unserved sink."""
        return unserved_warning(self.sink, self.unserved_seconds)


def unserved_warning(sink: str, unserved_seconds: float) -> str:
    """What an operator should know of a sink no relay has served for ``unserved_seconds``."""
    return (
        f"no relay has served sink {sink!r} for {_duration(unserved_seconds)}: "
        "its positions hold back pruning of the outbox; if it was removed from the "
        f"configuration, retire it with `fanout sinks retire {sink}`"
    )


def _duration(seconds: float) -> str:
    minutes, _ = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    days, hours = divmod(hours, 24)
    if days:
        return f"{days} d {hours} h"
    if hours:
        return f"{hours} h {minutes} min"
    return f"{minutes} min" if minutes else f"{seconds:.0f} s"


async def sink_totals(connection: Connection | asyncpg.Pool) -> list[SinkTotals]:
    """Every sink with positions: delivered, retrying and dead-lettered counts, by name."""
    rows = await connection.fetch(query("sink_totals"))
    return [
        SinkTotals(
            row["sink"],
            row["delivered"],
            row["retrying"],
            row["dead_lettered"],
            row["relays"],
            row["last_error"],
            row["served"],
            0.0 if row["served"] else row["unserved_seconds"],
        )
        for row in rows
    ]


async def unserved_sinks(connection: Connection | asyncpg.Pool) -> list[SinkTotals]:
    """The sinks whose positions no live lease covers: each holds back pruning."""
    return [sink for sink in await sink_totals(connection) if not sink.served]


@dataclass(frozen=True)
class RetiredSink:
    """What retiring a sink removed."""

    sink: str
    positions: int
    dead_letters: int


async def retire_sink(connection: Connection, sink: str) -> RetiredSink:
    """Remove a sink that no relay serves: its positions (and so its leases) and its dead
    letters, in one transaction. Raises :class:`UnknownSink` or :class:`SinkInUse`."""
    async with connection.transaction():
        await lock_idle_sink(connection, sink, "retiring it")
        positions = await connection.execute(query("delete_sink_positions"), sink)
        letters = await connection.execute(query("delete_sink_dead_letters"), sink)
    return RetiredSink(sink, int(positions.split()[-1]), int(letters.split()[-1]))


async def lock_idle_sink(connection: Connection, sink: str, doing: str) -> None:
    """Lock the sink's positions until the transaction ends, for ``doing`` to them what no
    running relay may see happen: :class:`UnknownSink` if it has none, :class:`SinkInUse`
    while a relay holds a lease on it."""
    rows = await connection.fetch(query("lock_sink_positions"), sink)
    if not rows:
        raise UnknownSink(sink)
    owners = sorted({row["owner"] for row in rows if row["leased"]})
    if owners:
        raise SinkInUse(sink, owners, doing)


async def move_positions_back(
    connection: Connection, sink: str, moves: Mapping[int, Position]
) -> None:
    """Move the sink's positions in the partitions of ``moves`` back to theirs (never
    forward); under :func:`lock_idle_sink`."""
    partitions = sorted(moves)
    await connection.execute(
        query("rewind_positions"),
        sink,
        partitions,
        [moves[p][0] for p in partitions],
        [moves[p][1] for p in partitions],
    )


async def sink_has_work(connection: Connection, sink: str) -> bool:
    """Whether ``sink`` has an undelivered committed event in any partition (readable now or
    held back by an older running transaction), or a replay."""
    has_work: bool = await connection.fetchval(query("sink_has_work"), sink)
    return has_work
