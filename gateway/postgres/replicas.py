"""Reads served by PostgreSQL streaming replicas, with read-your-writes.

Every write made while replicas are configured returns a **consistency token**: the primary's
WAL position once the write committed. A read given a token is served by a replica only once
that replica has replayed past it (checked on the replica's own connection just before the
read, so the read's snapshot includes the write), waiting at most ``replica_wait_ms``;
otherwise by the primary. A read without a token goes to a replica whose lag, measured in the
background, is under ``replica_max_lag_seconds``; it may miss writes made within that lag. A
token says something only of the replicas of the database that issued it (see
:mod:`~gateway.postgres.tokens`): a read with another database's token goes to the primary.

A replica that is down, lagging, or not in recovery (promoted) is skipped; reads go to the
primary with no error to the caller, and return to the replica once it is healthy again. A
replica whose pool has no connection free in time is busy, not down: that read goes to the
primary and the next ones try the replica again. A read the standby cancels for a conflict
with recovery (replay removing rows its snapshot may need) runs again on the primary.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

import asyncpg
from asyncpg.pool import PoolConnectionProxy

from gateway import metrics
from gateway.configuration.postgres_urls import one_url_per_host
from gateway.configuration.secrets import SecretUrl, redact_url
from gateway.configuration.settings import PostgresSettings
from gateway.errors import GatewayError
from gateway.order_ids import shard_tag
from gateway.postgres.database import (
    Connection,
    DatabaseUnavailable,
    connect,
    create_pool,
    is_unavailability,
)
from gateway.postgres.queries import query
from gateway.postgres.tokens import ConsistencyToken, format_token, issued_by

log = logging.getLogger("gateway.replicas")

T = TypeVar("T")

_CHECK_TIMEOUT_SECONDS = 2.0
_ACQUIRE_TIMEOUT_SECONDS = 2.0
_TOKEN_POLL_SECONDS = 0.002
_REPLICA_ERRORS = (
    DatabaseUnavailable,
    TimeoutError,
    OSError,
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
)
_RECOVERY_CONFLICT_STATES = frozenset({"40001", "40P01"})


class ReplicaBusy(Exception):
    """No connection of a replica's pool came free in time: every one is serving a read."""


def is_recovery_conflict(error: BaseException) -> bool:
    """Whether ``error`` is a standby cancelling a statement that conflicted with WAL replay
    (SQLSTATE 40001, or 40P01 for a buffer deadlock with the startup process): the standby is
    healthy, and the read can run on the primary."""
    return isinstance(error, asyncpg.PostgresError) and error.sqlstate in _RECOVERY_CONFLICT_STATES


def marks_replica_down(error: BaseException) -> bool:
    """Whether ``error``, met reading from a replica, says the replica cannot be reached (it
    refused or dropped the connection, or did not answer in time). A busy pool or a recovery
    conflict says nothing of the replica's health."""
    if isinstance(error, ReplicaBusy) or is_recovery_conflict(error):
        return False
    return is_unavailability(error)


def read_moves_to_primary(error: BaseException) -> bool:
    """Whether a read that failed on a replica with ``error`` runs again on the primary: the
    replica failed or cancelled it; any other error is the read's own and reaches the caller."""
    return marks_replica_down(error) or is_recovery_conflict(error)


def replica_urls(settings: PostgresSettings) -> dict[str, bool]:
    """The URL of every host that may serve reads, each with whether it is one of a cluster's
    hosts (listed in a multi-host URL, so that it may be the primary now): each configured
    replica, one URL per host of one that lists several, and, with ``read_from_standbys``,
    each host of ``url``. The checks skip the hosts that are not standbys."""
    urls = [url.get_secret_value() for url in settings.replicas]
    if settings.read_from_standbys:
        urls.append(settings.url.get_secret_value())
    hosts: dict[str, bool] = {}
    for url in urls:
        each = one_url_per_host(url)
        for host in each:
            hosts[host] = hosts.get(host, False) or len(each) > 1
    return hosts


def replica_settings(settings: PostgresSettings) -> list[PostgresSettings]:
    """The settings of each host that may serve reads (:func:`replica_urls`), one pool each."""
    return [
        settings.model_copy(
            update={"url": SecretUrl(url), "replicas": [], "read_from_standbys": False}
        )
        for url in replica_urls(settings)
    ]


def parse_lsn(text: str) -> int:
    """A WAL position (``16/B374D848``) as a number."""
    high, _, low = text.partition("/")
    return (int(high, 16) << 32) | int(low, 16)


def format_lsn(lsn: int) -> str:
    """A WAL position in PostgreSQL's notation."""
    return f"{lsn >> 32:X}/{lsn & 0xFFFFFFFF:X}"


@dataclass
class ReplicaState:
    """What the last background check found of one replica."""

    name: str
    """The replica's URL, password redacted."""
    cluster_host: bool = False
    """One of the hosts of a multi-host URL: it may be the cluster's primary now."""
    shard: str | None = None
    """The shard it is a standby of, in sharded mode."""
    reachable: bool = False
    in_recovery: bool = False
    streaming: bool = False
    replay_lsn: int = 0
    lag_bytes: int | None = None
    lag_seconds: float | None = None
    checked_at: float = 0.0
    error: str | None = None
    reads: int = 0
    """Reads this replica served."""

    @property
    def usable(self) -> bool:
        """Reachable, still a standby, and streaming from the primary."""
        return self.reachable and self.in_recovery and self.streaming

    def as_dict(self, max_lag_seconds: float) -> dict[str, object]:
        """What ``doctor`` and ``/readyz`` show of it (in sharded mode, first its shard)."""
        shard = {} if self.shard is None else {"shard": self.shard}
        return {
            **shard,
            "replica": self.name,
            "state": replica_state_name(self),
            "in_use": usable_without_token(self, max_lag_seconds),
            "in_recovery": self.in_recovery,
            "streaming": self.streaming,
            "replay_lsn": format_lsn(self.replay_lsn) if self.replay_lsn else None,
            "lag_bytes": self.lag_bytes,
            "lag_seconds": self.lag_seconds,
            "reads": self.reads,
            "error": self.error,
        }


def replica_state_name(state: ReplicaState) -> str:
    """down, primary (a cluster's host that is the primary now), promoted (a replica no
    longer a standby), not streaming, or streaming."""
    if not state.reachable:
        return "down"
    if not state.in_recovery:
        return "primary" if state.cluster_host else "promoted"
    return "streaming" if state.streaming else "not streaming"


def usable_without_token(state: ReplicaState, max_lag_seconds: float) -> bool:
    """Whether a read with no token may go to this replica: usable, and lagging less than
    ``max_lag_seconds`` as last measured."""
    return state.usable and state.lag_seconds is not None and state.lag_seconds < max_lag_seconds


def read_candidates(
    states: Sequence[ReplicaState], token: int | None, max_lag_seconds: float
) -> list[int]:
    """The replicas (by index) a read may try, in order. With a token: every usable one,
    those known to have replayed past it first (the others are asked to wait for it). With
    none: those lagging less than ``max_lag_seconds``. Fewest reads served first."""
    if token is None:
        chosen = [i for i, s in enumerate(states) if usable_without_token(s, max_lag_seconds)]
        return sorted(chosen, key=lambda i: states[i].reads)
    chosen = [i for i, s in enumerate(states) if s.usable]
    return sorted(chosen, key=lambda i: (states[i].replay_lsn < token, states[i].reads))


def commit_position(synchronous_commit: str, inserted: int, flushed: int) -> int:
    """The consistency token of a commit just made, from the WAL positions read right after it.

    A commit that waited for its WAL flush (every ``synchronous_commit`` but ``off``) ends at
    or before the flushed position: the tightest bound a standby can reach, since the primary
    sends only flushed WAL. The inserted position may run past it (other sessions' WAL not yet
    flushed, or the next page's header), which a standby receives only after the next flush.
    An asynchronous commit may not be flushed yet: only the inserted position covers it.
    """
    return inserted if synchronous_commit == "off" else flushed


def lag_seconds(
    receive_lsn: int | None, replay_lsn: int | None, since_last_replay: float | None
) -> float:
    """How far behind the primary a standby is: nothing when it has replayed all it received
    (an idle primary sends nothing), else the age of the last transaction it replayed."""
    if receive_lsn is None or replay_lsn is None or replay_lsn >= receive_lsn:
        return 0.0
    return max(since_last_replay or 0.0, 0.0)


@dataclass
class _Replica:
    settings: PostgresSettings
    state: ReplicaState
    pool: asyncpg.Pool | None = None
    monitor: asyncpg.Connection | None = None
    """The checks' own connection, so that a pool busy with reads does not fail them."""
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


class ReadRouter:
    """Chooses, read by read, a replica or the primary; checks the replicas in the background.

    One router serves one database: the one database of unsharded mode, or the shard called
    ``shard``, whose tag its tokens carry.
    """

    def __init__(
        self, primary: asyncpg.Pool, settings: PostgresSettings, *, shard: str | None = None
    ) -> None:
        self._primary = primary
        self._settings = settings
        self._shard_tag = shard_tag(shard) if shard is not None else None
        self._replicas = [
            _Replica(
                settings.model_copy(
                    update={"url": SecretUrl(url), "replicas": [], "read_from_standbys": False}
                ),
                ReplicaState(redact_url(url), cluster_host=cluster_host, shard=shard),
            )
            for url, cluster_host in replica_urls(settings).items()
        ]
        self._monitor: asyncio.Task[None] | None = None

    @property
    def enabled(self) -> bool:
        """Whether any replica is configured."""
        return bool(self._replicas)

    @property
    def states(self) -> list[ReplicaState]:
        """Each replica's state, as last checked."""
        return [replica.state for replica in self._replicas]

    async def start(self) -> None:
        """Check every replica once, then keep checking in the background."""
        if not self._replicas:
            return
        await self.check()
        self._monitor = asyncio.create_task(self._check_periodically(), name="replica-checks")

    async def close(self) -> None:
        """Stop checking and close the replicas' pools."""
        if self._monitor is not None:
            self._monitor.cancel()
            await asyncio.gather(self._monitor, return_exceptions=True)
        for replica in self._replicas:
            if replica.monitor is not None:
                await replica.monitor.close()
                replica.monitor = None
            if replica.pool is not None:
                await replica.pool.close()
                replica.pool = None

    async def check(self) -> None:
        """Measure every replica now."""
        await asyncio.gather(*(self._check(replica) for replica in self._replicas))

    async def token_after(self, connection: Connection) -> str:
        """The consistency token of the write just committed on ``connection`` (one of this
        router's primary), as clients see it."""
        position = await consistency_position(connection)
        return format_token(ConsistencyToken(position, self._shard_tag))

    async def run(
        self, read: Callable[[Connection], Awaitable[T]], token: ConsistencyToken | None = None
    ) -> T:
        """Run ``read`` on a replica that has the writes up to ``token`` (or, with none, on one
        lagging less than the limit), else on the primary; a token another database issued
        sends it to the primary. A replica that fails during the read is marked down and the
        read runs again on the primary; so does a read the replica cancels for a conflict
        with recovery, leaving the replica in use."""
        chosen = None
        if token is None or issued_by(token, self._shard_tag):
            chosen = await self._replica_for(token.position if token is not None else None)
        if chosen is not None:
            replica, connection = chosen
            try:
                result = await read(connection)
            except Exception as error:
                if not read_moves_to_primary(error):
                    raise
                if marks_replica_down(error):
                    log.warning("replica %s failed a read: %s", replica.state.name, error)
                    self._mark_down(replica, error)
                else:
                    log.info("replica %s cancelled a read: %s", replica.state.name, error)
            else:
                replica.state.reads += 1
                metrics.READS.labels("replica").inc()
                return result
            finally:
                assert replica.pool is not None
                await replica.pool.release(connection)
        metrics.READS.labels("primary").inc()
        async with self._primary.acquire() as connection:
            return await read(connection)

    async def _replica_for(
        self, token: int | None
    ) -> tuple[_Replica, PoolConnectionProxy[asyncpg.Record]] | None:
        if not self._replicas:
            return None
        states = [replica.state for replica in self._replicas]
        order = read_candidates(states, token, self._settings.replica_max_lag_seconds)
        deadline = time.monotonic() + self._settings.replica_wait_ms / 1000
        for index in order:
            replica = self._replicas[index]
            pool = replica.pool
            if pool is None:
                continue
            try:
                connection = await _acquire(pool)
            except (ReplicaBusy, *_REPLICA_ERRORS) as error:
                if marks_replica_down(error):
                    self._mark_down(replica, error)
                continue
            try:
                if token is None or await self._replayed(connection, token, deadline):
                    return replica, connection
            except _REPLICA_ERRORS as error:
                if marks_replica_down(error):
                    self._mark_down(replica, error)
            await pool.release(connection)
        return None

    @staticmethod
    def _mark_down(replica: _Replica, error: BaseException) -> None:
        """Keep reads off ``replica`` until a check finds it again."""
        replica.state.reachable = False
        replica.state.error = str(error) or type(error).__name__
        metrics.REPLICA_USABLE.labels(replica.state.name).set(0)

    async def _replayed(self, connection: Connection, token: int, deadline: float) -> bool:
        """Whether the replica replays past ``token`` before ``deadline`` (checked on the
        connection the read will use, so the read's snapshot includes the write)."""
        while True:
            replayed = await connection.fetchval(query("replica_replay_lsn"))
            if replayed is not None and parse_lsn(replayed) >= token:
                return True
            if time.monotonic() >= deadline:
                metrics.TOKEN_WAIT_EXPIRED.inc()
                return False
            await asyncio.sleep(_TOKEN_POLL_SECONDS)

    async def _check_periodically(self) -> None:
        while True:
            await asyncio.sleep(self._settings.replica_check_interval_seconds)
            try:
                await self.check()
            except Exception:  # a check that breaks must not end the checking
                log.exception("checking the replicas failed")

    async def _check(self, replica: _Replica) -> None:
        state = replica.state
        async with replica.lock:
            try:
                async with asyncio.timeout(_CHECK_TIMEOUT_SECONDS):
                    if replica.monitor is None:
                        replica.monitor = await connect(replica.settings)
                    row = await replica.monitor.fetchrow(query("replica_status"))
                if replica.pool is None:
                    replica.pool = await create_pool(replica.settings)
            except _REPLICA_ERRORS as error:
                if replica.monitor is not None:
                    replica.monitor.terminate()
                    replica.monitor = None
                if state.reachable:
                    log.warning("replica %s is unreachable: %s", state.name, error)
                state.reachable = False
                state.error = str(error) or type(error).__name__
                metrics.REPLICA_USABLE.labels(state.name).set(0)
                return
        assert row is not None
        receive = parse_lsn(row["receive_lsn"]) if row["receive_lsn"] else None
        replay = parse_lsn(row["replay_lsn"]) if row["replay_lsn"] else None
        state.reachable = True
        state.error = None
        state.in_recovery = row["in_recovery"]
        state.streaming = row["streaming"]
        state.replay_lsn = replay or 0
        state.lag_bytes = receive - replay if receive is not None and replay is not None else None
        state.lag_seconds = lag_seconds(receive, replay, row["since_last_replay"])
        state.checked_at = time.monotonic()
        usable = usable_without_token(state, self._settings.replica_max_lag_seconds)
        metrics.REPLICA_USABLE.labels(state.name).set(1 if usable else 0)
        metrics.REPLICA_LAG_SECONDS.labels(state.name).set(state.lag_seconds)


async def _acquire(pool: asyncpg.Pool) -> PoolConnectionProxy[asyncpg.Record]:
    """A connection of a replica's pool; :class:`ReplicaBusy` if none comes free in time.

    A replica that stops answering is found by the background checks, over a connection of
    their own; a wait for the pool alone does not tell a busy replica from a silent one.
    """
    try:
        async with asyncio.timeout(_ACQUIRE_TIMEOUT_SECONDS) as waiting:
            return await pool.acquire()
    except TimeoutError as error:
        if waiting.expired():
            raise ReplicaBusy(
                f"no connection came free in {_ACQUIRE_TIMEOUT_SECONDS:g} s"
            ) from error
        raise


async def consistency_position(connection: Connection) -> int:
    """The WAL position a standby must have replayed to show what ``connection`` has just
    committed (the consistency token of that write)."""
    row = await connection.fetchrow(query("commit_wal_positions"))
    assert row is not None
    return commit_position(
        row["synchronous_commit"], parse_lsn(row["inserted"]), parse_lsn(row["flushed"])
    )


async def primary_replication(connection: Connection) -> list[dict[str, object]]:
    """The primary's view of each standby (``pg_stat_replication``)."""
    rows = await connection.fetch(query("primary_replication"))
    return [dict(row) for row in rows]


async def streaming_replica(settings: PostgresSettings) -> PostgresSettings:
    """The settings of the first configured replica that is a standby streaming now; a
    :class:`GatewayError` if there is none."""
    replicas = replica_settings(settings)
    if not replicas:
        raise GatewayError("no replica is configured (postgres.replicas)")
    problems = []
    for replica in replicas:
        name = redact_url(replica.url.get_secret_value())
        try:
            connection = await connect(replica)
        except DatabaseUnavailable as error:
            problems.append(str(error))
            continue
        try:
            row = await connection.fetchrow(query("replica_status"))
        finally:
            await connection.close()
        assert row is not None
        if row["in_recovery"] and row["streaming"]:
            return replica
        problems.append(f"{name} is {'not streaming' if row['in_recovery'] else 'promoted'}")
    raise GatewayError("no configured replica is streaming: " + "; ".join(problems))
