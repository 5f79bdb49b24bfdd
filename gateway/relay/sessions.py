"""How a dead relay is told from a live one: by its PostgreSQL session, not by its silence.

A relay process keeps one connection of its own open to PostgreSQL for as long as it lives
(its liveness session) and records that session in its ``relay_instances`` row: the backend's
pid, the backend's start time, and the start time of the server it runs on. When the process
dies, however abruptly (SIGKILL, a crash, its machine powered off with the TCP connection reset),
the kernel closes its sockets, its backend exits, and the session leaves ``pg_stat_activity``.
Any other relay then sees the recorded session gone, deletes the dead relay's row and releases
its leases in one statement, and claims the partitions at once rather than after their lease
expires.

Why a session and not a faster heartbeat: a heartbeat tells a dead relay from a live one only
after the silence has lasted longer than any pause a live relay may take (a garbage
collection, a slow store, a loaded machine); a session ends when the process ends, whatever
the load. Why pid *and* backend start: pids are reused, the pair is not. Why the server's
start time: a PostgreSQL restart or a failover to a standby ends every relay's session at
once, which says nothing of the processes; a session recorded on another run of the server
(another start time) is not judged, so a restart does not make every relay release every other
relay's leases (a storm); each relay records its new session when it reconnects, and until it
does the lease is its rule.

The lease stays the rule for a relay that is alive but silent (hung, stopped, partitioned from
its database while its session stays open): its session lives, so its leases expire after
``relay.lease_ttl_seconds`` as before.

The decisions are :func:`session_ended` (is this instance dead?) and
:func:`membership_changed` (must this relay rebalance now?); the SQL of ``reap_dead_relays``
(``gateway/postgres/sql/relay.sql``) applies the first in PostgreSQL, and the in-memory storage
applies it as written here (``tests/contract`` holds both to the same rules).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

import asyncpg

Instant = TypeVar("Instant")
"""A point in time as the storage keeps it (a ``datetime`` in PostgreSQL, a float in memory)."""


@dataclass(frozen=True)
class RecordedSession(Generic[Instant]):
    """The liveness session a relay recorded in its instance row."""

    backend_pid: int
    backend_start: Instant
    server_started_at: Instant
    """When the server holding the session started (its run)."""


def session_ended(
    recorded: RecordedSession[Instant] | None,
    server_started_at: Instant,
    sessions: Mapping[int, Instant | None],
) -> bool:
    """Whether the relay that recorded ``recorded`` is dead: its session is gone from the server
    that started at ``server_started_at`` and has the open ``sessions`` (backend pid -> start,
    ``None`` where the server does not show it).

    Not dead, so left to its lease, when it cannot be told: no session recorded, a session of
    another run of the server (a restart or a failover ended it, not the process), or a pid
    whose start the server hides from this role.
    """
    if recorded is None or recorded.server_started_at != server_started_at:
        return False
    if recorded.backend_pid not in sessions:
        return True
    started = sessions[recorded.backend_pid]
    return started is not None and started != recorded.backend_start


@dataclass(frozen=True)
class SessionCheck:
    """What one check of the liveness session found."""

    reaped: frozenset[str]
    """The relays found dead by this check: their rows are gone and their leases released."""
    live: frozenset[str]
    """The relays with a recent heartbeat (this one among them), those reaped excepted."""


_CONNECTION_LOST: tuple[type[Exception], ...] = (
    OSError,
    asyncpg.InterfaceError,
    asyncpg.InternalClientError,
    asyncpg.PostgresConnectionError,
    asyncpg.AdminShutdownError,
    asyncpg.CrashShutdownError,
    asyncpg.CannotConnectNowError,
)


def ends_session(error: BaseException) -> bool:
    """Whether a check that failed with ``error`` lost the liveness session (its connection
    broke or the server ended it), so that another must be opened and recorded. A statement
    that was cancelled, timed out or met a lock leaves the session open: closing it would tell
    the other relays this one died."""
    return isinstance(error, _CONNECTION_LOST) and not isinstance(error, TimeoutError)


def reopen_at_once(was_open: bool, error: BaseException) -> bool:
    """Whether a check that failed with ``error`` is to open and record a new session and check
    again at once, rather than at the next interval: the session was open before the check, and
    its connection was found ended (the server closed it: a restart, a failover, an
    administrator). asyncpg reports such a connection as busy ("another operation is in
    progress", its protocol still reading the server's farewell) or as released to the pool
    (its slot given back when the close arrived), though no other task used it. A session that
    could not be opened waits for the next interval, with backoff."""
    return was_open and ends_session(error)


def membership_changed(known_live: Collection[str], check: SessionCheck) -> bool:
    """Whether this relay must refresh its view of the live relays and rebalance now, rather
    than at its next heartbeat: a relay was found dead, or one joined or left."""
    return bool(check.reaped) or set(known_live) != check.live


class RelaySession(Protocol):
    """A relay's liveness session: open while the process lives."""

    async def check(self, ttl_seconds: float) -> SessionCheck:
        """Reap the relays whose session ended (delete their rows, release their leases),
        record this session again if it is no longer this relay's, and list the live relays
        (heartbeat within ``ttl_seconds``). Raises a database error if the session broke."""
        ...

    async def close(self) -> None:
        """End the session (the other relays then see this relay as dead)."""
        ...
