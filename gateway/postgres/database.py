"""The one door to PostgreSQL: pools and connections with the gateway's codecs."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeAlias
from urllib.parse import unquote, urlsplit, urlunsplit

import asyncpg
from asyncpg.pool import PoolConnectionProxy
from pydantic_core import from_json, to_json

from gateway.configuration.secrets import redact_url
from gateway.configuration.settings import PostgresSettings
from gateway.errors import GatewayError
from gateway.postgres.queries import query

Connection: TypeAlias = "asyncpg.Connection[asyncpg.Record] | PoolConnectionProxy[asyncpg.Record]"
"""A connection of its own or one borrowed from a pool: the gateway's SQL runs on either."""


class DatabaseUnavailable(GatewayError):
    """PostgreSQL cannot be reached or refused the connection."""

    def __init__(self, message: str, *, reason: BaseException | None = None) -> None:
        super().__init__(message)
        self.reason = reason
        """The error the connection attempt met, if any."""


UNAVAILABILITY_ERRORS: tuple[type[Exception], ...] = (
    DatabaseUnavailable,
    OSError,
    asyncpg.PostgresConnectionError,
    asyncpg.CannotConnectNowError,
    asyncpg.AdminShutdownError,
    asyncpg.CrashShutdownError,
    asyncpg.TooManyConnectionsError,
    asyncpg.InterfaceError,
    asyncpg.InternalClientError,
    # A primary demoted to a standby, or a server set read-only for maintenance: no write
    # reaches it until the connection finds the primary again.
    asyncpg.ReadOnlySQLTransactionError,
)
"""The errors that say PostgreSQL could not be reached, dropped the connection, or no longer
takes writes there (asyncpg's ``TargetServerAttributeNotMatched``, an ``InternalClientError``,
is what connecting says while no host of a multi-host URL is the primary)."""


CONNECTING_ERRORS: tuple[type[Exception], ...] = (
    DatabaseUnavailable,
    OSError,
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    # TargetServerAttributeNotMatched: no host of a multi-host URL is in the role asked for.
    asyncpg.InternalClientError,
)
"""The errors connecting to PostgreSQL or asking it something can meet (ours and asyncpg's)."""
UNANSWERED_ERRORS: tuple[type[Exception], ...] = (TimeoutError, *CONNECTING_ERRORS)
"""The errors of a probe that PostgreSQL did not answer in time or could not answer."""


def is_unavailability(error: BaseException) -> bool:
    """Whether ``error`` says PostgreSQL could not be reached or dropped the connection (it is
    shutting down, starting up, restarting, failing over to a standby, or the network failed),
    rather than refused what was asked: a client may try again shortly.

    A transaction whose connection dropped was committed or not, never half; a retry that
    carries the same idempotency key finds out which.
    """
    return isinstance(error, UNAVAILABILITY_ERRORS)


async def fetch_required(connection: Connection, sql: str, *args: Any) -> asyncpg.Record:
    """The first row of a statement that always returns one (such as INSERT ... RETURNING)."""
    row = await connection.fetchrow(sql, *args)
    if row is None:
        raise GatewayError("a statement that must return a row returned none")
    return row


async def wait_until_durable(connection: Connection) -> None:
    """Commit a transaction that writes WAL (outside any other): under synchronous
    replication it returns once a synchronous standby holds everything committed before it.

    A commit whose wait for the standby was cancelled (a timeout) is visible on the primary
    alone; answering with what it wrote, as a request replayed by its idempotency key does,
    must wait for this first, or a failover could lose what the client was told exists.
    """
    async with connection.transaction():
        await connection.fetchval(query("assign_transaction_id"))


def _encode_json(value: object) -> str:
    return to_json(value).decode()


async def _configure(connection: asyncpg.Connection) -> None:
    # pydantic-core's parser: the relay decodes every payload it reads, and it is fast.
    for type_name in ("json", "jsonb"):
        await connection.set_type_codec(
            type_name, encoder=_encode_json, decoder=from_json, schema="pg_catalog"
        )


async def keep_session(connection: asyncpg.Connection) -> None:
    """How a pooled connection is reset on release: not at all, beyond what asyncpg always
    does (roll back a transaction left open, drop listeners).

    asyncpg's default sends ``pg_advisory_unlock_all(); CLOSE ALL; UNLISTEN *; RESET ALL`` on
    every release: one more round trip per request, about a tenth of a placement's CPU. The
    gateway keeps no session state on pooled connections (LISTEN and session-level locks use
    connections of their own; settings are ``SET LOCAL``), and code sharing ``Gateway.pool``
    must do the same.
    """


async def create_pool(
    settings: PostgresSettings,
    *,
    on_connect: Callable[[asyncpg.Connection], Awaitable[None]] | None = None,
) -> asyncpg.Pool:
    """A connection pool sized and timed as configured; ``on_connect`` runs on each new
    connection before it serves anything."""
    url = settings.url.get_secret_value()

    async def init(connection: asyncpg.Connection) -> None:
        await _configure(connection)
        if on_connect is not None:
            await on_connect(connection)

    try:
        pool = await asyncpg.create_pool(
            url,
            min_size=settings.pool_min_size,
            max_size=settings.pool_max_size,
            command_timeout=settings.command_timeout_seconds,
            init=init,
            reset=keep_session,
        )
    except CONNECTING_ERRORS as error:
        raise DatabaseUnavailable(_describe(url, error), reason=error) from None
    assert pool is not None
    return pool


async def connect(settings: PostgresSettings) -> asyncpg.Connection:
    """A single connection, for work that must not share a pool (migrations, LISTEN)."""
    url = settings.url.get_secret_value()
    try:
        connection = await asyncpg.connect(url, command_timeout=settings.command_timeout_seconds)
    except CONNECTING_ERRORS as error:
        raise DatabaseUnavailable(_describe(url, error), reason=error) from None
    await _configure(connection)
    return connection


def _describe(url: str, error: BaseException) -> str:
    detail = str(error).replace(url, redact_url(url)) or type(error).__name__
    return redact_url(f"cannot connect to PostgreSQL at {redact_url(url)}: {detail}")


async def ensure_database(settings: PostgresSettings) -> bool:
    """Create the database named in the URL if it does not exist; True if it was created.

    Connects to the server's ``postgres`` maintenance database to do so.
    """
    url = settings.url.get_secret_value()
    parts = urlsplit(url)
    name = unquote(parts.path.lstrip("/"))
    if not name:
        raise GatewayError("postgres.url names no database to create")
    maintenance = urlunsplit(parts._replace(path="/postgres"))
    try:
        connection = await asyncpg.connect(maintenance)
    except CONNECTING_ERRORS as error:
        raise DatabaseUnavailable(_describe(maintenance, error), reason=error) from None
    try:
        if await connection.fetchval(query("database_exists"), name):
            return False
        quoted = '"' + name.replace('"', '""') + '"'
        try:
            await connection.execute(f"CREATE DATABASE {quoted}")
        except asyncpg.DuplicateDatabaseError:
            return False
        return True
    finally:
        await connection.close()
