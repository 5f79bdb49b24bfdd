"""Waiting for PostgreSQL: which errors mean it cannot be reached for now, and trying again,
with backoff, until it answers."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

import asyncpg

from gateway.backoff import Backoff
from gateway.configuration.secrets import redact_url
from gateway.postgres.database import DatabaseUnavailable

log = logging.getLogger("gateway.postgres")

T = TypeVar("T")

ATTEMPT_SECONDS = 60.0
"""How long one try may take before it is abandoned and made again (asyncpg's own bound on
opening a connection)."""

_CONNECTION_ERRORS = (
    # Refused, reset, unreachable, a name not resolved, and timeouts (TimeoutError is one).
    OSError,
    # SQLSTATE class 08: the connection failed, was rejected, or no longer exists.
    asyncpg.PostgresConnectionError,
    # The database system is starting up, shutting down or in recovery.
    asyncpg.CannotConnectNowError,
    asyncpg.AdminShutdownError,
    asyncpg.CrashShutdownError,
    asyncpg.TooManyConnectionsError,
    # The client's side of a connection that closed or was lost mid-operation.
    asyncpg.InterfaceError,
    asyncpg.InternalClientError,
)


def is_reason_to_wait(error: BaseException) -> bool:
    """Whether ``error`` says PostgreSQL cannot be reached for now (a refused, reset or lost
    connection, a timeout, a server starting up, shutting down or out of connection slots), so
    that a process waits and tries again, rather than that it refused the process in a way
    waiting does not mend (a wrong password, a database that does not exist, a malformed URL).

    A :class:`DatabaseUnavailable` is judged by the error its connection attempt met.
    """
    if isinstance(error, DatabaseUnavailable):
        return error.reason is None or is_reason_to_wait(error.reason)
    if isinstance(error, asyncpg.ClientConfigurationError):
        return False
    return isinstance(error, _CONNECTION_ERRORS)


async def wait_for_postgres(
    attempt: Callable[[], Awaitable[T]],
    *,
    url: str | None,
    backoff: Backoff,
    stopping: asyncio.Event,
    attempt_seconds: float = ATTEMPT_SECONDS,
) -> T | None:
    """The result of ``attempt()``, tried until it succeeds, each try cut off after
    ``attempt_seconds``. After a try that fails for a reason to wait (:func:`is_reason_to_wait`)
    it logs the wait, once per try, and pauses with ``backoff``; any other error is raised.
    ``None`` if ``stopping`` is set before a try succeeds.

    ``url`` (PostgreSQL's, shown with its password redacted) only names the server in the log.
    """
    server = f"PostgreSQL at {redact_url(url)}" if url else "PostgreSQL"
    failures = 0
    while not stopping.is_set():
        try:
            result = await asyncio.wait_for(attempt(), attempt_seconds)
        except Exception as error:
            if not is_reason_to_wait(error):
                raise
            failures += 1
            delay = backoff.delay(failures)
            log.warning(
                "waiting for %s: attempt %d failed (%s), trying again in %.1f s",
                server,
                failures,
                describe(error),
                delay,
            )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), delay)
            continue
        if failures:
            log.warning("%s answers after %d failed attempts", server, failures)
        return result
    return None


def describe(error: BaseException) -> str:
    """``error`` in a log line: its type and message, passwords redacted; a
    :class:`DatabaseUnavailable` by the error its connection attempt met."""
    if isinstance(error, DatabaseUnavailable) and error.reason is not None:
        error = error.reason
    detail = str(error)
    return redact_url(f"{type(error).__name__}: {detail}" if detail else type(error).__name__)
