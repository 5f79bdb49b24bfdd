"""Which errors make a process wait for PostgreSQL rather than exit, and the waiting itself."""

from __future__ import annotations

import asyncio
import logging

import asyncpg
import pytest

from gateway.backoff import Backoff
from gateway.postgres.database import DatabaseUnavailable
from gateway.postgres.waiting import is_reason_to_wait, wait_for_postgres

URL = "postgresql://fanout:s3cret-pw@db.example:5432/orders"
NO_WAIT = Backoff(0.001, 0.001)


@pytest.mark.parametrize(
    "error",
    [
        ConnectionResetError(104, "Connection reset by peer"),
        ConnectionRefusedError(111, "Connection refused"),
        OSError(113, "No route to host"),
        TimeoutError(),
        asyncpg.CannotConnectNowError("the database system is starting up"),
        asyncpg.CannotConnectNowError("the database system is shutting down"),
        asyncpg.TooManyConnectionsError("sorry, too many clients already"),
        asyncpg.ConnectionDoesNotExistError("connection was closed in the middle of operation"),
        asyncpg.AdminShutdownError("terminating connection due to administrator command"),
        asyncpg.CrashShutdownError("terminating connection because of crash of another"),
        asyncpg.InterfaceError("cannot perform operation: connection is closed"),
        asyncpg.InternalClientError("unexpected connection_lost() call"),
        DatabaseUnavailable("cannot connect", reason=ConnectionResetError(104, "reset")),
        DatabaseUnavailable("cannot connect"),
    ],
    ids=lambda error: f"{type(error).__name__}: {error}",
)
def test_a_lost_refused_or_busy_connection_is_a_reason_to_wait(error: BaseException) -> None:
    assert is_reason_to_wait(error)


@pytest.mark.parametrize(
    "error",
    [
        asyncpg.InvalidPasswordError('password authentication failed for user "fanout"'),
        asyncpg.InvalidCatalogNameError('database "nope" does not exist'),
        asyncpg.ClientConfigurationError("invalid sslmode"),
        asyncpg.UndefinedTableError('relation "outbox" does not exist'),
        DatabaseUnavailable("cannot connect", reason=asyncpg.InvalidPasswordError("denied")),
        ValueError("a bug"),
    ],
    ids=lambda error: f"{type(error).__name__}: {error}",
)
def test_a_refusal_that_waiting_does_not_mend_is_not(error: BaseException) -> None:
    assert not is_reason_to_wait(error)


async def test_waits_through_resets_logging_each_wait_once_without_the_password(
    caplog: pytest.LogCaptureFixture,
) -> None:
    failures = [
        ConnectionResetError(104, f"reset talking to {URL}"),
        TimeoutError(),
        DatabaseUnavailable(
            f"cannot connect to PostgreSQL at {URL}: [Errno 111] Connection refused",
            reason=ConnectionRefusedError(111, "Connection refused"),
        ),
    ]

    async def attempt() -> str:
        if failures:
            raise failures.pop(0)
        return "connected"

    with caplog.at_level(logging.INFO, logger="gateway.postgres"):
        result = await wait_for_postgres(
            attempt, url=URL, backoff=NO_WAIT, stopping=asyncio.Event()
        )

    assert result == "connected"
    waits = [r.getMessage() for r in caplog.records if "waiting for PostgreSQL" in r.getMessage()]
    assert len(waits) == 3
    assert "attempt 1 failed (ConnectionResetError: [Errno 104] reset talking to" in waits[0]
    assert "attempt 2 failed (TimeoutError)" in waits[1]
    assert "attempt 3 failed (ConnectionRefusedError: [Errno 111] Connection refused)" in waits[2]
    assert "postgresql://fanout:***@db.example:5432/orders" in waits[0]
    assert "PostgreSQL at postgresql://fanout:***@db.example:5432/orders answers" in caplog.text
    assert "s3cret-pw" not in caplog.text


async def test_an_attempt_that_hangs_is_cut_off_and_tried_again() -> None:
    calls = 0

    async def attempt() -> int:
        nonlocal calls
        calls += 1
        if calls == 1:
            await asyncio.Event().wait()
        return calls

    result = await wait_for_postgres(
        attempt, url=URL, backoff=NO_WAIT, attempt_seconds=0.05, stopping=asyncio.Event()
    )

    assert result == 2


async def test_a_refusal_is_raised_at_once() -> None:
    calls = 0

    async def attempt() -> None:
        nonlocal calls
        calls += 1
        raise DatabaseUnavailable("denied", reason=asyncpg.InvalidPasswordError("denied"))

    with pytest.raises(DatabaseUnavailable):
        await wait_for_postgres(attempt, url=URL, backoff=NO_WAIT, stopping=asyncio.Event())
    assert calls == 1


async def test_a_stop_ends_the_wait_with_none() -> None:
    stopping = asyncio.Event()

    async def attempt() -> str:
        stopping.set()
        raise ConnectionRefusedError(111, "Connection refused")

    result = await wait_for_postgres(attempt, url=URL, backoff=Backoff(60, 60), stopping=stopping)

    assert result is None
