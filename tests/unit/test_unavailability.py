"""Which database errors tell a client to retry (503) rather than that the server failed."""

from __future__ import annotations

import asyncpg
import pytest

from gateway.postgres.database import DatabaseUnavailable, is_unavailability


@pytest.mark.parametrize(
    "error",
    [
        DatabaseUnavailable("cannot connect"),
        ConnectionRefusedError(111, "refused"),
        ConnectionResetError(104, "reset"),
        asyncpg.ConnectionDoesNotExistError("connection was closed in the middle of operation"),
        asyncpg.CannotConnectNowError("the database system is starting up"),
        asyncpg.AdminShutdownError("terminating connection due to administrator command"),
        asyncpg.InterfaceError("connection is closed"),
    ],
    ids=lambda error: type(error).__name__,
)
def test_lost_or_refused_connections_are_unavailability(error: BaseException) -> None:
    assert is_unavailability(error)


@pytest.mark.parametrize(
    "error",
    [
        asyncpg.UniqueViolationError("duplicate key"),
        asyncpg.StringDataRightTruncationError("value too long"),
        ValueError("a bug"),
        KeyError("a bug"),
    ],
    ids=lambda error: type(error).__name__,
)
def test_refusals_and_bugs_are_not(error: BaseException) -> None:
    assert not is_unavailability(error)
