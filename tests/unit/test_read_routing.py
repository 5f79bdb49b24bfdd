"""Where a read goes: tokens, lag, replica states and page cursors, without a server."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import asyncpg
import pytest

from gateway.configuration.settings import Settings
from gateway.errors import ValidationError
from gateway.postgres.database import DatabaseUnavailable
from gateway.postgres.replicas import (
    ReplicaBusy,
    ReplicaState,
    commit_position,
    format_lsn,
    is_recovery_conflict,
    lag_seconds,
    marks_replica_down,
    parse_lsn,
    read_candidates,
    read_moves_to_primary,
    replica_state_name,
    usable_without_token,
)
from gateway.postgres.tokens import ConsistencyToken, format_token, issued_by, parse_token
from gateway.write_path.pages import check_page_size, decode_cursor, encode_cursor


def streaming(name: str, *, lag: float = 0.0, replayed: int = 0, reads: int = 0) -> ReplicaState:
    return ReplicaState(
        name,
        reachable=True,
        in_recovery=True,
        streaming=True,
        replay_lsn=replayed,
        lag_seconds=lag,
        reads=reads,
    )


def test_wal_positions_read_and_write_in_postgresql_s_notation() -> None:
    assert parse_lsn("16/B374D848") == (0x16 << 32) | 0xB374D848
    assert format_lsn(parse_lsn("16/B374D848")) == "16/B374D848"
    position = parse_lsn("16/B374D848")
    assert parse_token(format_token(ConsistencyToken(position))) == ConsistencyToken(position)
    assert parse_token("0") == ConsistencyToken(0)
    assert parse_token("16b3748") == ConsistencyToken(0x16B3748)


def test_a_shard_s_token_carries_the_shard_s_tag_before_the_position() -> None:
    token = ConsistencyToken(parse_lsn("16/B374D848"), shard_tag=0x0A2F)
    assert format_token(token) == "0A2F-16B374D848"
    assert parse_token("0A2F-16B374D848") == token
    assert parse_token("0000-0") == ConsistencyToken(0, shard_tag=0)
    # A one-database token stays as it was: tokens handed out before shards still parse.
    assert format_token(ConsistencyToken(0x16B3748)) == "16B3748"


@pytest.mark.parametrize(
    "token",
    [
        "",
        "x",
        "0/16B3748",
        "-1",
        "12345678901234567",
        " ",
        "0\n",
        "A2F-16B3748",
        "0A2F1-16B3748",
        "0A2F-",
        "0A2F--1",
        "0A2F-16B3748-1",
        "G000-1",
    ],
)
def test_a_malformed_token_is_a_validation_error_naming_the_field(token: str) -> None:
    with pytest.raises(ValidationError) as error:
        parse_token(token)
    assert error.value.field == "consistency_token"


def test_a_token_speaks_only_of_the_replicas_of_the_database_that_issued_it() -> None:
    alpha, beta = 0x0A2F, 0x77C1
    from_alpha, unsharded = ConsistencyToken(100, alpha), ConsistencyToken(100)
    assert issued_by(from_alpha, alpha)
    assert issued_by(unsharded, None)
    # Another shard's, a one-database token in sharded mode, a shard's in one database.
    assert not issued_by(from_alpha, beta)
    assert not issued_by(unsharded, alpha)
    assert not issued_by(from_alpha, None)


def test_lag_is_nothing_once_everything_received_is_replayed() -> None:
    assert lag_seconds(receive_lsn=100, replay_lsn=100, since_last_replay=3600.0) == 0.0
    assert lag_seconds(receive_lsn=150, replay_lsn=100, since_last_replay=2.5) == 2.5
    assert lag_seconds(receive_lsn=None, replay_lsn=None, since_last_replay=None) == 0.0


def test_a_replica_serves_tokenless_reads_only_while_streaming_within_the_lag_limit() -> None:
    assert usable_without_token(streaming("r", lag=1.0), max_lag_seconds=5)
    assert not usable_without_token(streaming("r", lag=6.0), max_lag_seconds=5)
    down = ReplicaState("r")
    promoted = ReplicaState("r", reachable=True, in_recovery=False, streaming=False, lag_seconds=0)
    cut_off = ReplicaState("r", reachable=True, in_recovery=True, streaming=False, lag_seconds=0)
    for state, name in [(down, "down"), (promoted, "promoted"), (cut_off, "not streaming")]:
        assert not usable_without_token(state, max_lag_seconds=5)
        assert replica_state_name(state) == name
    assert replica_state_name(streaming("r")) == "streaming"


def test_tokenless_reads_go_to_replicas_within_the_limit_least_used_first() -> None:
    states = [streaming("a", lag=9.0), streaming("b", reads=5), streaming("c", reads=1)]
    assert read_candidates(states, None, max_lag_seconds=5) == [2, 1]


def test_a_token_read_tries_replicas_known_to_have_it_first_and_any_usable_one_after() -> None:
    states = [
        streaming("behind", replayed=10, reads=0),
        streaming("ahead", replayed=50, reads=9, lag=30.0),
        ReplicaState("down", replay_lsn=99),
    ]
    assert read_candidates(states, 40, max_lag_seconds=5) == [1, 0]


def test_a_commit_s_token_is_the_flushed_position_unless_the_commit_did_not_wait_for_it() -> None:
    for waited in ["on", "local", "remote_write", "remote_apply"]:
        assert commit_position(waited, inserted=0x2000, flushed=0x1F40) == 0x1F40
    assert commit_position("off", inserted=0x2000, flushed=0x1F40) == 0x2000


RECOVERY_CONFLICTS = [
    asyncpg.SerializationError("canceling statement due to conflict with recovery"),
    asyncpg.DeadlockDetectedError("canceling statement due to conflict with recovery"),
]
UNAVAILABLE = [
    ConnectionRefusedError(111, "Connection refused"),
    TimeoutError(),
    asyncpg.ConnectionDoesNotExistError("connection was closed in the middle of operation"),
    asyncpg.CannotConnectNowError("the database system is starting up"),
    asyncpg.AdminShutdownError("terminating connection due to administrator command"),
    DatabaseUnavailable("cannot connect to PostgreSQL"),
]


def test_a_replica_is_marked_down_only_when_it_cannot_be_reached() -> None:
    for error in UNAVAILABLE:
        assert marks_replica_down(error), error
    assert not marks_replica_down(ReplicaBusy("no connection of the pool came free"))
    for error in RECOVERY_CONFLICTS:
        assert not marks_replica_down(error), error
    assert not marks_replica_down(asyncpg.UndefinedTableError('relation "x" does not exist'))


def test_recovery_conflicts_are_told_by_their_sqlstate() -> None:
    for error in RECOVERY_CONFLICTS:
        assert is_recovery_conflict(error), error
    assert not is_recovery_conflict(asyncpg.TransactionRollbackError("rolled back"))
    assert not is_recovery_conflict(asyncpg.UniqueViolationError("duplicate key"))
    assert not is_recovery_conflict(TimeoutError())


def test_a_read_moves_to_the_primary_when_the_replica_fails_or_cancels_it() -> None:
    for error in [*UNAVAILABLE, *RECOVERY_CONFLICTS]:
        assert read_moves_to_primary(error), error
    # The read's own mistakes are the caller's to see, wherever the read ran.
    assert not read_moves_to_primary(asyncpg.UndefinedTableError('relation "x" does not exist'))
    assert not read_moves_to_primary(ValidationError.single("order_id", "not a UUID"))


def test_a_cursor_says_where_the_next_page_starts_and_nothing_else_is_one() -> None:
    moment, order_id = datetime(2026, 11, 29, 12, 0, 1, 5, tzinfo=UTC), uuid.uuid4()
    assert decode_cursor(encode_cursor(moment, order_id)) == (moment, order_id)
    for garbage in ["", "abc", encode_cursor(moment, order_id)[:-3] + "!!", "MjAyNg"]:
        with pytest.raises(ValidationError) as error:
            decode_cursor(garbage)
        assert error.value.field == "before"


def test_page_sizes_are_bounded() -> None:
    assert check_page_size(1) == 1 and check_page_size(100) == 100
    for size in (0, 101, -5):
        with pytest.raises(ValidationError) as error:
            check_page_size(size)
        assert error.value.field == "limit"


def test_replicas_come_from_a_comma_separated_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FANOUT_POSTGRES_URL", "postgresql://u:p@primary/db")
    monkeypatch.setenv(
        "FANOUT_POSTGRES_REPLICAS", "postgresql://u:p@r1:5433/db, postgresql://u:p@r2/db"
    )
    replicas = Settings().postgres.replicas
    assert [url.get_secret_value() for url in replicas] == [
        "postgresql://u:p@r1:5433/db",
        "postgresql://u:p@r2/db",
    ]
